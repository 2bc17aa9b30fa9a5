"""The dashboard's daily figures, kept in a small table so that no page load reads the order table.

``daily_figures`` has one row per Shanghai day, course and book (live or the simulator's): the money
paid and refunded that day, and for the orders created that day the funnel (created, paid, licensed,
cancelled, expired; comps left out) and how many are in each status now (comps included).

It is kept from the audit trail, with a watermark: every change to an order is recorded there with
the order's id in the very transaction that made it, so the events after ``rollup_mark`` name every
order whose figures may have changed since the table was last brought up to date. The days those
orders touch (created, paid, refunds settled) are **recounted whole** from their own rows, through
the indexes on ``created_at``, ``paid_at`` and ``settled_at``, and replace what the table had: a
count, never a delta, so nothing can drift. ``catch_up`` (the ``rollup`` job, and migration m0011
for the first time) writes that; ``figures`` gives the dashboard the table with the days touched
since the mark recounted in memory, so the page is current without writing anything.

A Shanghai day is UTC+8: China has kept no daylight saving time since 1991.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from peewee import fn

from database import write_transaction
from models import AuditEvent, DailyFigures, License, Order, Refund, RollupMark

from .licenses import COMP_PREFIX
from .shop import is_pack

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.timezone.utc
MARK = "daily_figures"
STATUSES = ("pending", "paid", "fulfilled", "partially_refunded", "refunded", "closed")
FUNNEL = ("created", "paid", "licensed", "cancelled", "expired")
COUNTS = ("paid_fen", "refunded_fen", *FUNNEL, *(f"now_{s}" for s in STATUSES))
# Orders looked up at a time when finding the days that events touched.
CHUNK = 500

Key = tuple[dt.date, str, bool]  # (Shanghai day, course id, sandbox)


def shanghai_day(at: dt.datetime) -> dt.date:
    return at.astimezone(SHANGHAI).date()


def day_start(day: dt.date) -> dt.datetime:
    """The UTC instant at which a Shanghai day begins."""
    return dt.datetime.combine(day, dt.time(), SHANGHAI).astimezone(UTC)


def recount(start: dt.datetime | None = None, stop: dt.datetime | None = None) -> dict[Key, dict[str, int]]:
    """Every figure of the Shanghai days in [start, stop) (all days when both are None), from the rows."""
    out: dict[Key, dict[str, int]] = {}

    def row(at: dt.datetime, course: str, sandbox: bool) -> dict[str, int]:
        key = (shanghai_day(at), course, bool(sandbox))
        found = out.get(key)
        if found is None:
            found = out[key] = dict.fromkeys(COUNTS, 0)
        return found

    def within(column: Any) -> Any:
        cond = column.is_null(False)
        if start is not None:
            cond &= column >= start
        if stop is not None:
            cond &= column < stop
        return cond

    licensed = License.select(License.id).where(License.order == Order.id)
    created = (Order.select(Order.created_at, Order.course, Order.sandbox, Order.status, Order.paid_at,
                            Order.close_reason, Order.out_trade_no, fn.EXISTS(licensed))
               .where(within(Order.created_at)).tuples())
    for at, course, sandbox, status, paid_at, close_reason, out_trade_no, has_license in created.iterator():
        r = row(at, course, sandbox)
        r["now_" + status] = r.get("now_" + status, 0) + 1
        if out_trade_no.startswith(COMP_PREFIX):
            continue
        r["created"] += 1
        r["paid"] += paid_at is not None
        # A paid pack of seats is licensed seat by seat (billing.seats): counted as licensed when paid.
        r["licensed"] += bool(has_license) or (paid_at is not None and is_pack(out_trade_no))
        r["cancelled"] += close_reason == "cancelled"
        r["expired"] += close_reason == "expired"
    paid = (Order.select(Order.paid_at, Order.course, Order.sandbox, Order.amount_fen)
            .where(within(Order.paid_at)).tuples())
    for at, course, sandbox, amount in paid.iterator():
        row(at, course, sandbox)["paid_fen"] += amount
    # A refund counts once WeChat says SUCCESS; PROCESSING is money still on its way.
    refunds = (Refund.select(Refund.settled_at, Order.course, Order.sandbox, Refund.amount_fen).join(Order)
               .where((Refund.status == "SUCCESS") & within(Refund.settled_at)).tuples())
    for at, course, sandbox, amount in refunds.iterator():
        row(at, course, sandbox)["refunded_fen"] += amount
    return out


def recount_days(days: Iterable[dt.date]) -> dict[Key, dict[str, int]]:
    """The figures of these days, each day's rows read through the time indexes (runs of days at once)."""
    out: dict[Key, dict[str, int]] = {}
    ordered = sorted(set(days))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == dt.timedelta(days=1):
            j += 1
        out.update(recount(day_start(ordered[i]), day_start(ordered[j] + dt.timedelta(days=1))))
        i = j + 1
    return out


def touched_days(after: int, upto: int | None = None) -> tuple[set[dt.date], int]:
    """The Shanghai days whose figures events (after, upto] may have changed, and the newest event id seen."""
    query = AuditEvent.select(AuditEvent.order, AuditEvent.id).where(AuditEvent.id > after)
    if upto is not None:
        query = query.where(AuditEvent.id <= upto)
    newest = after
    order_ids: set[int] = set()
    for order_id, event_id in query.tuples().iterator():
        newest = max(newest, event_id)
        if order_id is not None:
            order_ids.add(order_id)
    days: set[dt.date] = set()
    ids = sorted(order_ids)
    for n in range(0, len(ids), CHUNK):
        chunk = ids[n:n + CHUNK]
        for created_at, paid_at in Order.select(Order.created_at, Order.paid_at).where(Order.id.in_(chunk)).tuples():
            days.add(shanghai_day(created_at))
            if paid_at is not None:
                days.add(shanghai_day(paid_at))
        for (settled_at,) in (Refund.select(Refund.settled_at)
                              .where(Refund.order.in_(chunk) & Refund.settled_at.is_null(False)).tuples()):
            days.add(shanghai_day(settled_at))
    return days, newest


def _newest_event() -> int:
    return int(AuditEvent.select(fn.COALESCE(fn.MAX(AuditEvent.id), 0)).scalar() or 0)


def _mark() -> int | None:
    mark = RollupMark.get_or_none(RollupMark.name == MARK)
    return None if mark is None else int(mark.event_id)


def _store(figures: dict[Key, dict[str, int]], days: Iterable[dt.date] | None, now: dt.datetime, upto: int) -> None:
    """Replace the rows of these days (all rows when days is None) by figures; move the mark to upto."""
    if days is None:
        DailyFigures.delete().execute()
    else:
        listed = sorted(set(days))
        for n in range(0, len(listed), CHUNK):
            DailyFigures.delete().where(DailyFigures.day.in_(listed[n:n + CHUNK])).execute()
    new_rows = [{"day": day, "course": course, "sandbox": sandbox, **counts}
                for (day, course, sandbox), counts in sorted(figures.items())]
    for n in range(0, len(new_rows), CHUNK):
        DailyFigures.insert_many(new_rows[n:n + CHUNK]).execute()
    (RollupMark.insert(name=MARK, event_id=upto, updated_at=now)
     .on_conflict(conflict_target=[RollupMark.name], update={RollupMark.event_id: upto, RollupMark.updated_at: now})
     .execute())


def store_all(now: dt.datetime) -> dict[str, Any]:
    """Count every day from scratch and store it, in the caller's write transaction."""
    upto = _newest_event()
    figures = recount()
    _store(figures, None, now, upto)
    return {"rebuilt": len(figures), "mark": upto}


def rebuild(now: dt.datetime) -> dict[str, Any]:
    """Count every day again from scratch (after a bulk load, or to check the table); one write transaction."""
    with write_transaction():
        return store_all(now)


def catch_up(now: dt.datetime) -> dict[str, Any]:
    """Recount the days touched by events since the mark and store them (the ``rollup`` job).

    Inside one write transaction: no state change can commit between reading the events and
    moving the mark, so none is missed.
    """
    with write_transaction():
        after = _mark()
        if after is None:
            return store_all(now)
        days, upto = touched_days(after)
        if upto == after:
            return {}
        _store(recount_days(days), days, now, upto)
    return {"days": len(days), "events": upto - after, "mark": upto}


@dataclass
class Figures:
    """The dashboard's view of the table: rows of some days for one book, and the status totals."""

    rows: dict[tuple[dt.date, str], dict[str, int]] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)

    def day_total(self, day: dt.date, name: str) -> int:
        return sum(counts[name] for (d, _), counts in self.rows.items() if d == day)


def figures(first: dt.date, last: dt.date, sandbox: bool = False) -> Figures:
    """The rows of days first..last for one book and its status totals, current to the newest event.

    Reads the table, then recounts in memory only the days touched since the mark (the ``rollup``
    job keeps that to about a minute's worth); writes nothing.
    """
    after = _mark()
    fresh: dict[Key, dict[str, int]]
    if after is None:  # never built (a database the migration has not reached): count it all
        dirty: set[dt.date] = set()
        fresh = recount()
        stored: list[Any] = []
    else:
        dirty, _ = touched_days(after)
        fresh = recount_days(dirty)
        stored = list(DailyFigures.select().where((DailyFigures.sandbox == sandbox) & (DailyFigures.day >= first)
                                                  & (DailyFigures.day <= last)).dicts())
    out = Figures()
    for r in stored:
        if r["day"] not in dirty:
            out.rows[(r["day"], r["course"])] = {name: r[name] for name in COUNTS}
    for (day, course, book), counts in fresh.items():
        if book == sandbox and first <= day <= last:
            out.rows[(day, course)] = counts
    totals = dict.fromkeys(STATUSES, 0)
    if after is not None:
        query = DailyFigures.select(*(fn.COALESCE(fn.SUM(getattr(DailyFigures, f"now_{s}")), 0) for s in STATUSES)
                                    ).where(DailyFigures.sandbox == sandbox)
        if dirty:
            query = query.where(DailyFigures.day.not_in(sorted(dirty)))
        sums = query.tuples().first() or ()
        totals = {s: int(v or 0) for s, v in zip(STATUSES, sums)}
    for (_, _, book), counts in fresh.items():
        if book == sandbox:
            for s in STATUSES:
                totals[s] += counts[f"now_{s}"]
    out.by_status = totals
    return out


def stored_rows(sandbox: bool | None = None) -> dict[Key, dict[str, int]]:
    """What the table holds now (for tests and `lbpay` checks), zero rows left out."""
    query = DailyFigures.select()
    if sandbox is not None:
        query = query.where(DailyFigures.sandbox == sandbox)
    return {(r["day"], r["course"], bool(r["sandbox"])): {name: r[name] for name in COUNTS}
            for r in query.dicts()}



def rollup_job(shop: Any, now: dt.datetime) -> dict[str, Any]:
    """The scheduled job: bring ``daily_figures`` up to the newest audit event."""
    return catch_up(now)
