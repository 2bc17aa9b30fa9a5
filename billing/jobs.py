"""Importing this module registers every scheduled job."""

from . import reconcile  # noqa: F401
