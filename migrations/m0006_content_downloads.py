"""Courses may limit content downloads per license, and each license key counts the files it was served."""

from __future__ import annotations

from peewee import Database, IntegerField
from playhouse.migrate import SchemaMigrator

from migrations import add_column_if_missing


def apply(database: Database, migrator: SchemaMigrator) -> None:
    add_column_if_missing(database, migrator, "course", "download_limit", IntegerField(null=True))
    add_column_if_missing(database, migrator, "license", "downloads", IntegerField(default=0))
