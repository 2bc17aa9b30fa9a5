"""Alerts and bill differences the creator settles from the console; prefix search at scale.

``alert`` gains who acknowledged and who resolved it, and when; ``bill_difference`` gains who settled
it, when and with what note. Both keep NULLs for rows made before: open until someone acts.

Prefix search (``learner1`` finds ``learner1@example.com``) is a range on an index: ``col >= q AND
col < q'`` where q' is q with its last character raised by one. SQLite compares with its BINARY
collation, so the unique indexes on the order numbers and ``order_email_lower`` (m0005) already
serve it. PostgreSQL compares in the database's collation, which under a locale such as en_US does
not order text byte by byte; the console compares in ``COLLATE "C"``, so here are the same indexes
in that collation. Open differences and open alerts get partial indexes: the badge counts them on
every console page.
"""

from __future__ import annotations

from peewee import CharField, Database, PostgresqlDatabase
from playhouse.migrate import SchemaMigrator, migrate

from migrations import column_names
from models import UTCDateTimeField


def apply(database: Database, migrator: SchemaMigrator) -> None:
    columns = column_names(database, "alert")
    steps = []
    for name in ("acknowledged_at", "resolved_at"):
        if name not in columns:
            steps.append(migrator.add_column("alert", name, UTCDateTimeField(null=True)))
    for name in ("acknowledged_by", "resolved_by"):
        if name not in columns:
            steps.append(migrator.add_column("alert", name, CharField(max_length=120, null=True)))
    columns = column_names(database, "bill_difference")
    if "resolved_at" not in columns:
        steps.append(migrator.add_column("bill_difference", "resolved_at", UTCDateTimeField(null=True)))
    if "resolved_by" not in columns:
        steps.append(migrator.add_column("bill_difference", "resolved_by", CharField(max_length=120, null=True)))
    if "resolution" not in columns:
        steps.append(migrator.add_column("bill_difference", "resolution", CharField(max_length=300, null=True)))
    if steps:
        migrate(*steps)
    database.execute_sql('CREATE INDEX IF NOT EXISTS "alert_open" ON "alert" ("at") WHERE "resolved_at" IS NULL')
    database.execute_sql('CREATE INDEX IF NOT EXISTS "bill_difference_open" ON "bill_difference" ("bill_date") '
                         'WHERE "resolved_at" IS NULL')
    if isinstance(database, PostgresqlDatabase):
        # The same statements as models.POSTGRES_PREFIX_INDEXES, written out: a migration never changes.
        database.execute_sql('CREATE INDEX IF NOT EXISTS "order_public_id_c" ON "order" ("public_id" COLLATE "C")')
        database.execute_sql('CREATE INDEX IF NOT EXISTS "order_out_trade_no_c" ON "order" ("out_trade_no" COLLATE "C")')
        database.execute_sql('CREATE INDEX IF NOT EXISTS "order_transaction_id_c" ON "order" '
                             '("transaction_id" COLLATE "C")')
        database.execute_sql('CREATE INDEX IF NOT EXISTS "order_email_lower_c" ON "order" '
                             '(lower("email") COLLATE "C")')
