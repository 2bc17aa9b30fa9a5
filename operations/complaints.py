"""The complaint jobs: fetch what notifications named, list the last 30 days, and alert the creator."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from models import Alert

from billing import complaints
from billing.shop import Shop
from wechatpay.errors import WeChatPayError

from . import alerts

log = logging.getLogger(__name__)

LIST_SECONDS = complaints.LIST_EVERY


def _alert(shop: Shop, now: dt.datetime) -> int:
    """Raise each complaint alert not raised yet (a read first: known keys never take the write lock)."""
    due = complaints.alerts_due(now)
    keys = [key for _, key, _ in due]
    known = {a.key for a in Alert.select(Alert.key).where(Alert.key.in_(keys))} if keys else set()
    raised = 0
    for kind, key, message in due:
        if key not in known:
            raised += alerts.raise_alert(kind, message, now=now, key=key, to=shop.config.alert_email) is not None
    return raised


def complaint_job(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Every minute: fetch the complaints notifications named, then alert on arrivals and near deadlines."""
    summary: dict[str, Any] = {}
    try:
        summary.update(complaints.sync_named(shop, now))
    except complaints.ComplaintsUnavailable:
        summary["state"] = "unavailable"
    summary["alerts"] = _alert(shop, now)
    return summary


def complaint_list_job(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Every quarter hour: list the last 30 days at WeChat, so a lost notification costs minutes, not the deadline."""
    try:
        summary = complaints.list_recent(shop, now)
    except complaints.ComplaintsUnavailable:
        return {"state": "unavailable"}
    except WeChatPayError as exc:
        log.warning("complaints could not be listed: %s", exc)
        return {"error": type(exc).__name__}
    summary["alerts"] = _alert(shop, now)
    return summary
