"""Refunds keep WeChat's success_time; orders remember when WeChat confirmed their close and when to ask again for a code_url; keyed attempts WeChat did not confirm are kept.

``refund.success_time`` dates a refund the way the daily bill does. ``order.wechat_closed_at``
lets a cancel close here at once and at WeChat later (WeChat advises no sooner than 5 minutes
after creation): orders closed before this migration were closed at WeChat when they closed
here, so they take their ``closed_at``. ``order.code_url_retry_at`` holds the next refresh of
a code_url WeChat gave back unchanged. ``order_attempt`` is a new table, made from its model.
"""

from __future__ import annotations

from peewee import CharField, Database
from playhouse.migrate import SchemaMigrator

import models
from migrations import add_column_if_missing, column_names


def apply(database: Database, migrator: SchemaMigrator) -> None:
    add_column_if_missing(database, migrator, "refund", "success_time", CharField(max_length=32, null=True))
    added = "wechat_closed_at" not in column_names(database, "order")
    add_column_if_missing(database, migrator, "order", "wechat_closed_at", models.UTCDateTimeField(null=True))
    if added:
        database.execute_sql('UPDATE "order" SET "wechat_closed_at" = "closed_at" '
                             'WHERE "status" = \'closed\' AND "closed_at" IS NOT NULL')
    add_column_if_missing(database, migrator, "order", "code_url_retry_at", models.UTCDateTimeField(null=True))
    database.create_tables([models.OrderAttempt], safe=True)
