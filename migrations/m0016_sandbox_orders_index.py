"""The simulator's orders get a partial index of their own: no page or start-up check walks a million live
orders to find the few made against the simulator.

The sandbox book's dashboard (its newest orders) and the live start's count of unarchived simulator
orders each walked the order table: 1.1–1.8 s warm and 7–8.5 s cold at 1,000,000 live orders. The
index holds only orders with ``sandbox`` true, so a live payment or order writes nothing to it.

The index audit of issue 20 found no index on the tables a payment writes that no query reads
(docs/performance.md), so none is dropped here.
"""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def apply(database: Database, migrator: SchemaMigrator) -> None:
    database.execute_sql('CREATE INDEX IF NOT EXISTS "order_sandbox_created" ON "order" ("created_at") '
                         'WHERE "sandbox" = TRUE')
