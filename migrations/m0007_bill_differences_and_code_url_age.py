"""Orders remember when their code_url was issued (it lives 2 hours), and the daily bill's differences are kept."""

from __future__ import annotations

from peewee import Database
from playhouse.migrate import SchemaMigrator

import models
from migrations import add_column_if_missing


def apply(database: Database, migrator: SchemaMigrator) -> None:
    add_column_if_missing(database, migrator, "order", "code_url_at", models.UTCDateTimeField(null=True))
    database.create_tables([models.BillDifference, models.BillCheck], safe=True)
