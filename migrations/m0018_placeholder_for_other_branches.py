"""A placeholder that keeps the numbers without gaps until the branches that own m0018 are merged (drop it then)."""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def apply(database: Database, migrator: SchemaMigrator) -> None:
    return None
