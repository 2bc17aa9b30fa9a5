"""The first released schema: courses, buyers, orders, licenses, notifications and the audit trail.

The models are frozen copies of that release, not imports of ``models``: this migration must
build the same tables however the models change later.
"""

from __future__ import annotations

from typing import Any

from peewee import (AutoField, BooleanField, CharField, Database, ForeignKeyField, IntegerField, Model,
                    TextField)
from playhouse.migrate import SchemaMigrator

from models import UTCDateTimeField


class _Base(Model):
    class Meta:
        legacy_table_names = False


class Course(_Base):
    id = CharField(primary_key=True, max_length=64)
    title = CharField(max_length=127)
    price_fen = IntegerField()
    currency = CharField(max_length=3, default="CNY")
    plan = CharField(max_length=16, default="one_time")
    period_days = IntegerField(null=True)
    active = BooleanField(default=True)
    created_at = UTCDateTimeField()


class Buyer(_Base):
    id = AutoField()
    token_hash = CharField(max_length=64, unique=True)
    email = CharField(max_length=254, null=True)
    created_at = UTCDateTimeField()


class Order(_Base):
    id = AutoField()
    public_id = CharField(max_length=40, unique=True)
    out_trade_no = CharField(max_length=32, unique=True)
    course = ForeignKeyField(Course, on_delete="RESTRICT")
    buyer = ForeignKeyField(Buyer, null=True, on_delete="RESTRICT")
    email = CharField(max_length=254, null=True)
    description = CharField(max_length=127)
    amount_fen = IntegerField()
    currency = CharField(max_length=3, default="CNY")
    status = CharField(max_length=24, default="pending", index=True)
    flag = CharField(max_length=32, null=True, index=True)
    flag_detail = TextField(null=True)
    token_hash = CharField(max_length=64)
    code_url = CharField(max_length=256, null=True)
    qr_svg = TextField(null=True)
    transaction_id = CharField(max_length=32, null=True, unique=True)
    trade_state = CharField(max_length=16, null=True)
    payer_openid = CharField(max_length=128, null=True)
    bank_type = CharField(max_length=32, null=True)
    success_time = CharField(max_length=32, null=True)
    created_at = UTCDateTimeField(index=True)
    expires_at = UTCDateTimeField()
    paid_at = UTCDateTimeField(null=True)
    closed_at = UTCDateTimeField(null=True)
    close_reason = CharField(max_length=32, null=True)
    last_queried_at = UTCDateTimeField(null=True)


class License(_Base):
    id = AutoField()
    license_id = CharField(max_length=36, index=True)
    order = ForeignKeyField(Order, unique=True, on_delete="RESTRICT")
    course = ForeignKeyField(Course, on_delete="RESTRICT")
    buyer = ForeignKeyField(Buyer, null=True, on_delete="RESTRICT")
    key = TextField()
    kid = CharField(max_length=16)
    plan = CharField(max_length=16)
    issued_at = UTCDateTimeField()
    expires_at = UTCDateTimeField()
    revoked_at = UTCDateTimeField(null=True)
    revoke_reason = CharField(max_length=64, null=True)


class Notification(_Base):
    id = AutoField()
    kind = CharField(max_length=16)
    received_at = UTCDateTimeField(index=True)
    headers = TextField()
    body = TextField()
    result = CharField(max_length=24, default="received")
    reason = CharField(max_length=200, null=True)
    event_id = CharField(max_length=64, null=True, index=True)
    event_type = CharField(max_length=32, null=True)
    out_trade_no = CharField(max_length=32, null=True, index=True)
    order = ForeignKeyField(Order, null=True, on_delete="SET NULL")


class AuditEvent(_Base):
    id = AutoField()
    at = UTCDateTimeField(index=True)
    actor = CharField(max_length=120)
    action = CharField(max_length=64, index=True)
    order = ForeignKeyField(Order, null=True, on_delete="RESTRICT")
    detail = TextField(default="{}")
    ip = CharField(max_length=64, null=True)
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64, unique=True)


TABLES: list[Any] = [Course, Buyer, Order, License, Notification, AuditEvent]


def apply(database: Database, migrator: SchemaMigrator) -> None:
    with database.bind_ctx(TABLES):
        database.create_tables(TABLES, safe=True)
