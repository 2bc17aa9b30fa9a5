"""The two float columns become doubles on PostgreSQL: ``rate_limit.due`` and ``wechat_call_stat.seconds``.

peewee's ``FloatField`` is ``REAL`` there, a 4-byte float: at today's epoch (about 1.8e9 seconds)
neighbouring values are 128 seconds apart, so every rate limit's ``due`` was rounded by up to a
minute and no per-address or per-account limit ever filled; a latency sum lost its milliseconds
too. The models now say ``DoubleField``. SQLite's REAL is already an 8-byte double: nothing to do.
Rows keep their (rounded) values; a rate limit's row is at most an hour of state anyway.
"""

from __future__ import annotations

from peewee import Database, SqliteDatabase
from playhouse.migrate import SchemaMigrator

CHANGES = (("rate_limit", 'ALTER TABLE "rate_limit" ALTER COLUMN "due" TYPE DOUBLE PRECISION'),
           ("wechat_call_stat", 'ALTER TABLE "wechat_call_stat" ALTER COLUMN "seconds" TYPE DOUBLE PRECISION'))


def apply(database: Database, migrator: SchemaMigrator) -> None:
    if isinstance(database, SqliteDatabase):
        return
    for table, statement in CHANGES:
        if database.table_exists(table):  # made by create_tables after an earlier migration, if at all
            database.execute_sql(statement)
