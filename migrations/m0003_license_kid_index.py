"""Index licenses by signing key id, so ``lbpay keys list`` counts the licenses each key signed quickly."""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator, migrate


def apply(database: Database, migrator: SchemaMigrator) -> None:
    if not any(index.columns == ["kid"] for index in database.get_indexes("license")):
        migrate(migrator.add_index("license", ("kid",), False))
