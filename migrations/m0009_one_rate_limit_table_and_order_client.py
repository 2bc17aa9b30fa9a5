"""One table for every rate limit; orders remember who sent their idempotency key and from where.

``rate_limit`` (made from its model, as every new table is) replaces ``rate_window`` and
``login_bucket``: their rows are only recent request counts, so they are dropped, not converted.
``order`` gains ``idempotency_request`` (who asked and what, hashed) and ``client_key`` (the
client address keyed with the server secret), both empty for orders placed before.
"""

from __future__ import annotations

from peewee import CharField, Database
from playhouse.migrate import SchemaMigrator, migrate

from migrations import column_names


def apply(database: Database, migrator: SchemaMigrator) -> None:
    database.execute_sql('DROP TABLE IF EXISTS "rate_window"')
    database.execute_sql('DROP TABLE IF EXISTS "login_bucket"')
    columns = column_names(database, "order")
    if "idempotency_request" not in columns:
        migrate(migrator.add_column("order", "idempotency_request", CharField(max_length=64, null=True)))
    if "client_key" not in columns:
        migrate(migrator.add_column("order", "client_key", CharField(max_length=32, null=True)),
                migrator.add_index("order", ("client_key",), False))
