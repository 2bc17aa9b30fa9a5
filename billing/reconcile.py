"""Finding what a lost notification missed: query pending orders, close expired ones, license paid ones."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from models import Order
from wechatpay.errors import ApiError, WeChatPayError

from . import audit, limits
from .payments import sync_with_wechat
from .shop import Shop
from database import write_transaction

log = logging.getLogger(__name__)

# Leave a fresh order to its notification for this long before asking WeChat.
QUERY_AFTER = dt.timedelta(seconds=20)
# Ask WeChat about one order at most this often, whoever asks (poll or job): briskly while the
# learner is likely paying, then less (a late payer still gets the license well within 30 s).
# Each query is an RSA-signed HTTPS call and a transaction: at 4 s, 100 learners waiting at once
# spent a tenth of the server on them; 8 s halves that and a lost notification still costs < 10 s.
QUERY_EVERY = dt.timedelta(seconds=8)
QUERY_EVERY_LATER = dt.timedelta(seconds=12)
BRISK_FOR = dt.timedelta(minutes=3)


def query_interval(order: Any, now: dt.datetime) -> dt.timedelta:
    """How long to leave an order before asking WeChat about it again."""
    return QUERY_EVERY if now - order.created_at < BRISK_FOR else QUERY_EVERY_LATER
BATCH = 200


def claim_query(order: Order, now: dt.datetime, every: dt.timedelta = QUERY_EVERY) -> bool:
    """Compare-and-set ``last_queried_at`` so only one caller queries an order per interval."""
    with write_transaction():
        return bool(Order.update(last_queried_at=now).where(
            (Order.id == order.id) & (Order.status == "pending")
            & (Order.last_queried_at.is_null() | (Order.last_queried_at <= now - every))).execute())


# How often this process's status polls may ask WeChat, whoever polls: memory only, a poll never writes for it.
POLL_BUDGET = limits.LocalBucket(limits.POLL_QUERIES_PER_PROCESS)


def check_on_poll(shop: Shop, order: Order, *, after: dt.timedelta = dt.timedelta(seconds=3)) -> Order:
    """When a waiting extension polls a pending order, ask WeChat about it now and then."""
    now = shop.now()
    if order.status != "pending" or order.code_url is None or now - order.created_at < after:
        return order
    every = query_interval(order, now)
    if order.last_queried_at is not None and now - order.last_queried_at < every:
        return order  # asked recently: spare the write lock as well as WeChat
    if not POLL_BUDGET.take() or not claim_query(order, now, every):
        return order
    try:
        # One try only: a waiting learner's poll must not hold a worker through WeChat's retries.
        sync_with_wechat(shop, order, source="poll", attempts=1)
    except WeChatPayError as exc:
        log.warning("query on poll failed for %s: %s", order.public_id, exc)
        return order
    return Order.get_by_id(order.id)


def _count(summary: dict[str, int], outcome: str) -> None:
    """Tally what asking WeChat about one order changed."""
    if outcome == "fulfilled":
        summary["fulfilled"] += 1
    elif outcome not in ("not_paid", "duplicate"):
        summary["flagged"] += 1


def _close_expired(shop: Shop, order: Order, now: dt.datetime, summary: dict[str, int]) -> None:
    # Ask first: an order paid at the last moment must be fulfilled, not closed.
    if order.code_url is not None:
        outcome = sync_with_wechat(shop, order, source="reconcile")
        if outcome != "not_paid":
            _count(summary, outcome)
            return
    try:
        shop.wechat.close_order(order.out_trade_no)
    except ApiError as exc:
        # The query above decided "not paid"; a payment racing the close comes as a late payment.
        if exc.code != "ORDER_CLOSED":
            raise
    with write_transaction():
        if Order.update(status="closed", closed_at=now, close_reason="expired", wechat_closed_at=now).where(
                (Order.id == order.id) & (Order.status == "pending")).execute():
            audit.record("order.expired", at=now, order=order, detail={"expires_at": order.expires_at.isoformat()})
            summary["closed"] += 1


def _close_cancelled(shop: Shop, now: dt.datetime, summary: dict[str, int]) -> None:
    """Close at WeChat the orders cancelled here in their first 5 minutes, once that is allowed.

    Asked first: a learner who paid the still-open QR after cancelling is a late payment, flagged
    for the creator (and the paid order is not closed).
    """
    from .orders import CLOSE_AT_WECHAT_AFTER, close_at_wechat

    waiting = list(Order.select().where((Order.status == "closed") & Order.wechat_closed_at.is_null()
                                        & Order.flag.is_null() & Order.close_reason.in_(("cancelled", "expired"))
                                        & (Order.created_at <= now - CLOSE_AT_WECHAT_AFTER)
                                        & (Order.closed_at > now - dt.timedelta(days=2)))
                   .order_by(Order.id).limit(BATCH))
    for order in waiting:
        try:
            if order.code_url is not None:
                outcome = sync_with_wechat(shop, order, source="reconcile")
                if outcome != "not_paid":
                    _count(summary, outcome)
                    continue
            if close_at_wechat(shop, order):
                summary["closed_at_wechat"] = summary.get("closed_at_wechat", 0) + 1
        except WeChatPayError as exc:
            summary["errors"] += 1
            log.warning("reconcile could not close %s at WeChat: %s", order.public_id, exc)


def reconcile(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """One pass over every order that may disagree with WeChat; returns what it fixed."""
    # A paid order is licensed in the same transaction that marks it paid, so "paid without a
    # license" cannot persist: a failed signing rolls the payment back to pending, and the
    # query below fulfils it on the next pass.
    summary = {"queried": 0, "fulfilled": 0, "closed": 0, "flagged": 0, "errors": 0}
    # Read the batch to the end before the first write: a SELECT still being stepped keeps its
    # snapshot, and once another connection commits, SQLite refuses to upgrade that stale
    # snapshot to a write ("database is locked", without waiting) and the whole pass dies.
    pending = list(Order.select().where((Order.status == "pending") & (Order.flag.is_null())
                                        & (Order.created_at <= now - QUERY_AFTER))
                   .order_by(Order.last_queried_at.asc(nulls="first"), Order.id).limit(BATCH))
    for order in pending:
        try:
            if order.expires_at <= now:
                _close_expired(shop, order, now, summary)
            elif order.code_url is not None and claim_query(order, now):
                summary["queried"] += 1
                outcome = sync_with_wechat(shop, order, source="reconcile")
                _count(summary, outcome)
                if outcome == "fulfilled":
                    log.info("reconcile fulfilled %s: its notification had not arrived", order.public_id)
        except WeChatPayError as exc:
            summary["errors"] += 1
            log.warning("reconcile could not check %s: %s", order.public_id, exc)
    _close_cancelled(shop, now, summary)
    # Platform certificates are refreshed by their own job (operations/jobs.py "wechat_certificates").
    return summary
