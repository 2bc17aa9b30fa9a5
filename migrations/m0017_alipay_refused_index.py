"""Refused Alipay notifications get a partial index, so the alert job counts the last 15 minutes cheaply.

WeChat Pay's refused notifications are counted the same way (``audit_event_rejected_at``). An Alipay
notification that fails its signature or names another app is kept only as an audit event
(``alipay.notification_refused``); the audit table holds two events per payment, so the minute job
must not walk it. The index holds only those refused events.
"""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator


def apply(database: Database, migrator: SchemaMigrator) -> None:
    database.execute_sql('CREATE INDEX IF NOT EXISTS "audit_event_alipay_refused_at" ON "audit_event" ("at") '
                         "WHERE \"action\" = 'alipay.notification_refused'")
