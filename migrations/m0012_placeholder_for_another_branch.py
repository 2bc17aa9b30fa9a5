"""PLACEHOLDER on branch postgres only: the number another helper's branch owns; drop this file when merging.

Migration numbers must run 1..n without gaps, and this branch was given m0013.
"""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def apply(database: Database, migrator: SchemaMigrator) -> None:
    return None
