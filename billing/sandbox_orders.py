"""Orders made against the WeChat Pay simulator: counted apart, and kept from a live start unless archived."""

from __future__ import annotations

import json
from dataclasses import dataclass

from peewee import SQL, Case, fn

from models import AuditEvent, Order, db

from . import audit
from .shop import Shop
from database import write_transaction

ARCHIVED = "sandbox.archived"
_ARCHIVED_LITERAL = SQL("'sandbox.archived'")  # ARCHIVED as SQL text, for audit_event's partial index


class SandboxOrdersInLiveDatabase(Exception):
    """A live start found sandbox orders nobody has archived; the message says what to do."""


@dataclass(frozen=True)
class SandboxOrders:
    """How many sandbox orders the database holds, and how many of them are not archived yet."""

    total: int
    unarchived: int
    newest_id: int


def _archived_up_to() -> int:
    """The newest order id a ``sandbox.archived`` event covers (0 when none)."""
    # A literal, not a parameter: it is what lets the planner use the partial index for this action.
    event = AuditEvent.select().where(AuditEvent.action == _ARCHIVED_LITERAL).order_by(AuditEvent.id.desc()).first()
    return int(json.loads(event.detail).get("up_to_order_id", 0)) if event is not None else 0


def count_sandbox_orders() -> SandboxOrders:
    """Count the sandbox orders, and those made since the last archiving."""
    done = _archived_up_to()
    # One walk of the sandbox orders' own partial index (every process start runs this in live mode):
    # an "id > done" test in the WHERE would make the planner walk the table from there instead.
    total, newest, unarchived = (Order.select(fn.COUNT(Order.id), fn.COALESCE(fn.MAX(Order.id), 0),
                                              fn.COALESCE(fn.SUM(Case(None, [(Order.id > done, 1)], 0)), 0))
                                 .where(Order.sandbox == True).tuples().get())  # noqa: E712
    return SandboxOrders(int(total), int(unarchived), int(newest))


def _schema_has_marks() -> bool:
    """False before ``lbpay init`` made the tables or added ``order.sandbox`` (nothing to check yet)."""
    database = db.obj
    if not database.table_exists("order"):
        return False
    return any(column.name == "sandbox" for column in database.get_columns("order"))


def check_live_start(shop: Shop) -> SandboxOrders | None:
    """Before a live start: refuse sandbox orders, or archive them when the setting says so.

    Archiving keeps the rows (the audit chain and licenses point at them) and records one
    ``sandbox.archived`` event naming how many and up to which order; they stay out of revenue,
    charts and exports because every order carries its ``sandbox`` mark.
    """
    if not shop.config.live:
        return None
    with db.connection_context():
        if not _schema_has_marks():
            return None
        found = count_sandbox_orders()
        if found.unarchived == 0:
            return found
        if not shop.config.archive_sandbox_orders:
            raise SandboxOrdersInLiveDatabase(
                f"the database holds {found.unarchived} sandbox order(s) made against the WeChat Pay simulator; "
                "a live shop must not mix them with real money. Use a fresh database, or start once with "
                "LBPAY_ARCHIVE_SANDBOX_ORDERS=on to archive them (kept, marked, never counted as revenue)")
        with write_transaction():
            again = count_sandbox_orders()  # another worker may have archived them meanwhile
            if again.unarchived:
                audit.record(ARCHIVED, at=shop.now(), actor="system",
                             detail={"orders": again.unarchived, "up_to_order_id": again.newest_id})
        return count_sandbox_orders()
