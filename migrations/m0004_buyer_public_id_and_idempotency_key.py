"""Buyers get a public id (their token is derived from it); orders remember the client's idempotency key.

Existing buyers get a fresh random public id; their existing buyer tokens keep working because
tokens are looked up by hash. SQLite cannot make a column NOT NULL without rebuilding the table,
which the foreign keys to ``buyer`` make unsafe, so the column stays nullable in upgraded
databases; every row is filled and the code always sets it.
"""

from __future__ import annotations

import secrets

from peewee import CharField, Database, Table
from playhouse.migrate import SchemaMigrator, migrate

from migrations import column_names


def apply(database: Database, migrator: SchemaMigrator) -> None:
    if "public_id" not in column_names(database, "buyer"):
        migrate(migrator.add_column("buyer", "public_id", CharField(max_length=40, null=True)))
        buyer = Table("buyer", ("id", "public_id")).bind(database)
        for row in buyer.select(buyer.id).where(buyer.public_id.is_null()).dicts():
            buyer.update(public_id="buy_" + secrets.token_urlsafe(16)).where(buyer.id == row["id"]).execute()
        migrate(migrator.add_index("buyer", ("public_id",), True))
    if "idempotency_key" not in column_names(database, "order"):
        migrate(migrator.add_column("order", "idempotency_key", CharField(max_length=64, null=True)),
                migrator.add_index("order", ("idempotency_key",), True))
