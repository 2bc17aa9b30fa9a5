"""Each order names the payment method it is paid through: ``wechat`` (every order before this) or ``alipay``.

Existing rows become ``wechat``: before Alipay (issue 23) there was no other method.
"""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator

from migrations import column_names


def apply(database: Database, migrator: SchemaMigrator) -> None:
    if "payment_method" not in column_names(database, "order"):
        # A plain ADD COLUMN with its default: peewee's NOT NULL step would rebuild "order" on SQLite,
        # which the foreign keys pointing at it refuse (as in m0008).
        database.execute_sql(
            """ALTER TABLE "order" ADD COLUMN "payment_method" VARCHAR(8) NOT NULL DEFAULT 'wechat'""")
