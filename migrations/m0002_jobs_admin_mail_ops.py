"""Tables added since the baseline: job leases and runs, admin users, refunds, the mail outbox, ops.

These tables were new when this migration was written, so they are created from their models;
a later change to any of them is a migration of its own.
"""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator

import models

NEW_TABLES = ("Lease", "JobRun", "AdminUser", "LoginBucket", "Refund", "MailOutbox", "RateWindow",
              "WeChatCallStat", "OutsideService", "Alert")


def apply(database: Database, migrator: SchemaMigrator) -> None:
    tables = [getattr(models, name) for name in NEW_TABLES if hasattr(models, name)]
    database.create_tables(tables, safe=True)
