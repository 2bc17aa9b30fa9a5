"""Forgetting what we need not keep: raw notification bodies and personal data after the retention period.

The financial record stays: amounts, order numbers, WeChat transaction ids, times, license ids.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from models import Buyer, Complaint, Notification, Order

from billing import audit
from billing.payments import prune_refused_stubs
from billing.shop import Shop
from database import write_transaction

PURGED_BODY = ""
PURGED_HEADERS = "{}"


def _doomed(cutoff: dt.datetime) -> dict[str, Any]:
    notifications = Notification.select().where((Notification.received_at < cutoff)
                                                & ((Notification.body != PURGED_BODY)
                                                   | (Notification.headers != PURGED_HEADERS)))
    orders = Order.select().where((Order.created_at < cutoff)
                                  & (Order.email.is_null(False) | Order.payer_openid.is_null(False)
                                     | Order.qr_svg.is_null(False) | Order.client_key.is_null(False)))
    # A buyer's e-mail goes once none of their orders is younger than the cutoff.
    recent_buyers = Order.select(Order.buyer).where((Order.created_at >= cutoff) & Order.buyer.is_null(False))
    buyers = Buyer.select().where((Buyer.created_at < cutoff) & Buyer.email.is_null(False)
                                  & Buyer.id.not_in(recent_buyers))
    # A complaint keeps what was said and done; the payer's phone number and images go.
    complaints = Complaint.select().where((Complaint.complaint_time < cutoff) & (Complaint.state == "PROCESSED")
                                          & (Complaint.payer_phone_cipher.is_null(False) | (Complaint.media != "[]")))
    return {"notifications": notifications, "orders": orders, "buyers": buyers, "complaints": complaints}


def purge(shop: Shop, now: dt.datetime, *, days: int | None = None, dry_run: bool = False,
          actor: str = "system") -> dict[str, int]:
    """Blank raw notifications and personal data older than the retention period; return counts."""
    days = shop.config.retention_days if days is None else days
    cutoff = now - dt.timedelta(days=days)
    with write_transaction():
        doomed = _doomed(cutoff)
        counts = {name: query.count() for name, query in doomed.items()}
        if dry_run or not any(counts.values()):
            return counts
        Notification.update(body=PURGED_BODY, headers=PURGED_HEADERS).where(
            Notification.id.in_(doomed["notifications"].select(Notification.id))).execute()
        Order.update(email=None, payer_openid=None, qr_svg=None, client_key=None).where(
            Order.id.in_(doomed["orders"].select(Order.id))).execute()
        Buyer.update(email=None).where(Buyer.id.in_(doomed["buyers"].select(Buyer.id))).execute()
        Complaint.update(payer_phone_cipher=None, media="[]").where(
            Complaint.id.in_(doomed["complaints"].select(Complaint.id))).execute()
        audit.record("retention.purged", at=now, actor=actor,
                     detail={**counts, "days": days, "cutoff": cutoff.isoformat()})
    return counts


def purge_old_personal_data(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Run the purge a few times a day (and prune month-old refused stubs); most runs find nothing."""
    return {**purge(shop, now), "stubs_pruned": prune_refused_stubs(now)}
