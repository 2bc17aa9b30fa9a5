"""Importing this module registers every scheduled job."""

from . import reconcile  # noqa: F401
from . import learners, mail  # noqa: F401,E402  (the mail outbox and renewal reminders)
from . import refunds  # noqa: F401,E402  (refund reconciliation)
from . import alerts, backups, retention  # noqa: F401,E402  (creator alerts, daily backup, data retention)
from . import reports  # noqa: F401,E402  (the hourly full walk of the audit chain)
