"""Mark each order as made against the WeChat Pay simulator (sandbox) or for real (live).

Existing rows become live (``sandbox = 0``): before this column nothing told the two apart, and
live is what the console already counted them as, so no figure a creator has seen changes. A
database that was only ever a sandbox and is now to go live should start empty (the README says
so); from this migration on, every new order carries its mode and a live start refuses a database
holding sandbox orders unless LBPAY_ARCHIVE_SANDBOX_ORDERS=on.
"""

from __future__ import annotations

from peewee import Database, SqliteDatabase
from playhouse.migrate import SchemaMigrator


def apply(database: Database, migrator: SchemaMigrator) -> None:
    # A plain ADD COLUMN with its default: peewee's NOT NULL step would rebuild "order" on SQLite,
    # which the foreign keys pointing at it refuse.
    if isinstance(database, SqliteDatabase):
        database.execute_sql('ALTER TABLE "order" ADD COLUMN "sandbox" INTEGER NOT NULL DEFAULT 0')
    else:
        database.execute_sql('ALTER TABLE "order" ADD COLUMN "sandbox" BOOLEAN NOT NULL DEFAULT false')
