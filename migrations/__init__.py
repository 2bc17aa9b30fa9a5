"""Numbered schema migrations, applied in order by ``lbpay init`` and recorded in ``schema_version``.

Each ``mNNNN_<what>.py`` module has ``apply(database, migrator)``; a migration, once released, is
never edited: a later change is a new file. ``migrate()`` ends by creating any table a model has
that no migration made yet, so a new table needs no migration, but a change to an existing one does.
One process migrates at a time (``migration_lock``): two machines starting together on one database
would otherwise both apply the same migration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib
import os
import pkgutil
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterator

from peewee import CharField, Database, IntegerField, Model, SqliteDatabase
from playhouse.migrate import PostgresqlMigrator, SchemaMigrator, SqliteMigrator

import models

UTC = dt.timezone.utc
_NAME = re.compile(r"^m(\d{4})_(\w+)$")
# PostgreSQL's advisory lock key for migrations: any fixed number no other lock of ours uses.
ADVISORY_LOCK_KEY = 0x6C62706179_01


class SchemaVersion(Model):
    """One applied migration."""

    version = IntegerField(primary_key=True)
    name = CharField(max_length=100)
    applied_at = models.UTCDateTimeField()

    class Meta:
        table_name = "schema_version"
        database = models.db


@dataclass(frozen=True)
class Migration:
    """A numbered migration module."""

    version: int
    name: str
    module: ModuleType

    def apply(self, database: Database, migrator: SchemaMigrator) -> None:
        self.module.apply(database, migrator)


def all_migrations() -> list[Migration]:
    """Return every migration in this package, in order, checking the numbers run 1, 2, 3…"""
    found = []
    for info in pkgutil.iter_modules(__path__):
        match = _NAME.match(info.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2),
                                   importlib.import_module(f"{__name__}.{info.name}")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration numbers must run 1..n without gaps: {[m.version for m in found]}")
    return found


def latest_version() -> int:
    return len(all_migrations())


def _migrator(database: Database) -> SchemaMigrator:
    if isinstance(database, SqliteDatabase):
        return SqliteMigrator(database)
    return PostgresqlMigrator(database)


def applied_versions(database: Database) -> set[int]:
    """Return the versions recorded in ``schema_version`` (empty when the table is missing)."""
    if not database.table_exists("schema_version"):
        return set()
    return {row.version for row in SchemaVersion.select(SchemaVersion.version)}


@contextlib.contextmanager
def migration_lock(database: Database) -> Iterator[None]:
    """Hold the lock that lets one process at a time migrate: a file lock beside SQLite, an advisory lock on PostgreSQL."""
    if isinstance(database, SqliteDatabase):
        path = str(database.database)
        if path == ":memory:" or path.startswith("file:"):
            yield  # a private in-memory database has one connection: nobody to race with
            return
        # Read-only is enough for flock, so a lock file made by another user (root at a console) still works.
        fd = os.open(path + ".migrate-lock", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
        return
    # Another machine's migrations may take longer than a writer's lock timeout: wait for them.
    database.execute_sql("SET lock_timeout = 0")
    database.execute_sql("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    database.execute_sql("RESET lock_timeout")
    try:
        yield
    finally:
        database.execute_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def migrate(now: dt.datetime | None = None, *, upto: int | None = None) -> list[int]:
    """Apply every pending migration (or those up to ``upto``), each in its own transaction; return them.

    The whole run holds ``migration_lock``, so a second process waits, then finds the work done.
    """
    database: Any = models.db.obj
    with migration_lock(database):
        return _migrate(database, now or dt.datetime.now(UTC), upto)


def _migrate(database: Any, now: dt.datetime, upto: int | None) -> list[int]:
    """Apply the pending migrations; the caller holds the migration lock."""
    applied_now = []
    with models.db.atomic():
        database.create_tables([SchemaVersion], safe=True)
        done = applied_versions(database)
        if not done and database.table_exists("order"):
            # A database made by create_tables() before migrations existed: it holds the baseline.
            SchemaVersion.create(version=1, name="baseline (found in place)", applied_at=now)
            done = {1}
    for migration in all_migrations():
        if migration.version in done or (upto is not None and migration.version > upto):
            continue
        with models.db.atomic():
            migration.apply(database, _migrator(database))
            SchemaVersion.create(version=migration.version, name=migration.name, applied_at=now)
        applied_now.append(migration.version)
    if upto is None:
        # Tables a model has and no migration made (new since the last migration): create them.
        models.db.create_tables(models.ALL_MODELS, safe=True)
    return applied_now


def column_names(database: Database, table: str) -> set[str]:
    """Return the columns a table has in the database."""
    return {c.name for c in database.get_columns(table)}


def add_column_if_missing(database: Database, migrator: SchemaMigrator, table: str, name: str,
                          field: Any) -> None:
    """Add a column unless it is there (a table created from the current model already has it)."""
    from playhouse.migrate import migrate as run

    if database.table_exists(table) and name not in column_names(database, table):
        run(migrator.add_column(table, name, field))
