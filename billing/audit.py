"""The append-only audit trail, each event chained by SHA-256 to the one before it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from models import AuditEvent, Order, db

from . import rows

GENESIS = "0" * 64


def _event_hash(prev_hash: str, at: dt.datetime, actor: str, action: str,
                order_id: int | None, detail: str, ip: str | None) -> str:
    material = json.dumps(
        [prev_hash, at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
         actor, action, order_id, detail, ip],
        ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Event:
    """One audit event to append: what happened, when, by whom, to which order, with what detail."""

    action: str
    at: dt.datetime
    actor: str = "system"
    order: Order | None = None
    detail: dict[str, Any] | None = None
    ip: str | None = None


def record(action: str, *, at: dt.datetime, actor: str = "system", order: Order | None = None,
           detail: dict[str, Any] | None = None, ip: str | None = None) -> str:
    """Append one event and return its hash; call it inside the write transaction of the change it describes."""
    return record_all([Event(action, at, actor, order, detail, ip)])


def record_all(events: list[Event]) -> str:
    """Append events in this order, each chained to the one before, in one statement; return the last hash.

    The newest hash is read here, inside the write lock, so writers in any process chain one
    after another and never fork the trail.
    """
    return prepare_all(events).append()


_COLUMNS = ("at", "actor", "action", "order", "detail", "ip", "prev_hash", "hash")


class Prepared:
    """Events made ready to append before the write lock: everything but the chain's links.

    Inside the lock ``append`` reads the newest hash, hashes each event onto it and inserts them
    all in one statement: the same rows and hashes ``record_all`` has always written.
    """

    __slots__ = ("values", "tails")

    def __init__(self, values: list[tuple[Any, ...]], tails: list[str]) -> None:
        self.values, self.tails = values, tails

    def append(self) -> str:
        last = db.execute_sql(_LAST_HASH_SQL).fetchone()
        prev_hash = last[0] if last else GENESIS
        params: list[Any] = []
        for values, tail in zip(self.values, self.tails):
            # The material _event_hash hashes: [prev_hash, at, actor, action, order, detail, ip] as
            # compact JSON; a hex digest needs no escaping, so it goes in front of the rest made before.
            digest = hashlib.sha256(f'["{prev_hash}",{tail}'.encode()).hexdigest()
            params += values
            params += (prev_hash, digest)
            prev_hash = digest
        db.execute_sql(rows.insert_sql(AuditEvent, _COLUMNS, len(self.values)), params)
        return prev_hash


def prepare_all(events: list[Event]) -> Prepared:
    """Make events ready to ``append`` later, inside the write transaction of the change they describe."""
    fields = AuditEvent._meta.fields
    values, tails = [], []
    for event in events:
        # Microsecond precision is what the column keeps, so hash exactly that.
        at = event.at.astimezone(dt.timezone.utc)
        text = json.dumps(event.detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        order_id = event.order.id if event.order is not None else None
        values.append((fields["at"].db_value(at), event.actor, event.action, order_id, text, event.ip))
        tails.append(json.dumps([at.isoformat(timespec="microseconds"), event.actor, event.action, order_id,
                                 text, event.ip], ensure_ascii=False, separators=(",", ":"))[1:])
    return Prepared(values, tails)


_LAST_HASH_SQL = f'SELECT "hash" FROM "{AuditEvent._meta.table_name}" ORDER BY "id" DESC LIMIT 1'


def verify_chain(after: tuple[int, str] | None = None) -> tuple[bool, int, int | None]:
    """Walk the trail; return (whole, events checked, id of the first bad event).

    ``after`` = (id, hash) of an event already known good starts the walk just past it.
    """
    last_id, prev_hash = after if after is not None else (0, GENESIS)
    count = 0
    # Plain tuples, not model instances: the walk is the console's slowest read at scale.
    rows = (AuditEvent.select(AuditEvent.id, AuditEvent.at, AuditEvent.actor, AuditEvent.action,
                              AuditEvent.order, AuditEvent.detail, AuditEvent.ip, AuditEvent.prev_hash,
                              AuditEvent.hash)
            .where(AuditEvent.id > last_id).order_by(AuditEvent.id).tuples().iterator())
    at_value = AuditEvent.at.python_value
    for event_id, at, actor, action, order_id, detail, ip, stored_prev, stored_hash in rows:
        expected = _event_hash(prev_hash, at_value(at), actor, action, order_id, detail, ip)
        if not (hmac.compare_digest(stored_prev, prev_hash) and hmac.compare_digest(stored_hash, expected)):
            return False, count, event_id
        prev_hash = stored_hash
        count += 1
    return True, count, None


def last_event() -> tuple[int, str] | None:
    """The (id, hash) of the newest event, or None for an empty trail."""
    row = AuditEvent.select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).first()
    return None if row is None else (row.id, row.hash)
