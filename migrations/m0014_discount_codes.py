"""Discount codes and launch prices: the ``discount_code`` table, and the price each order was given.

``order`` gains ``list_price_fen`` (empty for older orders: their list price is what they paid),
``discount_fen`` (0 for older orders) and ``discount_id`` (the code or launch price used, if any).
"""

from __future__ import annotations

from peewee import Database, ForeignKeyField, IntegerField
from playhouse.migrate import SchemaMigrator, migrate

import models
from migrations import column_names


def apply(database: Database, migrator: SchemaMigrator) -> None:
    models.DiscountCode.create_table(safe=True)
    columns = column_names(database, "order")
    if "list_price_fen" not in columns:
        migrate(migrator.add_column("order", "list_price_fen", IntegerField(null=True)))
    if "discount_fen" not in columns:
        # A plain ADD COLUMN with its default: peewee's NOT NULL step would rebuild "order" on SQLite,
        # which the foreign keys pointing at it refuse (as in m0008).
        database.execute_sql('ALTER TABLE "order" ADD COLUMN "discount_fen" INTEGER NOT NULL DEFAULT 0')
    if "discount_id" not in columns:
        # peewee indexes a foreign key column it adds
        migrate(migrator.add_column("order", "discount_id", ForeignKeyField(
            models.DiscountCode, null=True, field=models.DiscountCode.id, on_delete="RESTRICT")))
