"""Telling the creator when something needs them, by mail through the outbox, at most once per kind per hour."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from peewee import JOIN, SQL

from models import Alert, AuditEvent, License, Notification, Order, OutsideService

from billing.mail import enqueue_mail
from billing.shop import Shop, is_pack
from database import write_transaction

from .metrics import flush_calls

log = logging.getLogger(__name__)

MAIL_EVERY = dt.timedelta(hours=1)
UNLICENSED_AFTER = dt.timedelta(minutes=5)
WECHAT_DOWN_AFTER = dt.timedelta(minutes=10)
FAILING_WINDOW = dt.timedelta(minutes=15)
FAILING_THRESHOLD = 3
# Notification results that mean "we could not believe a signed message": a wrong key deployed?
VERIFICATION_FAILURES = ("bad_signature", "unknown_serial", "bad_signature_type", "stale_timestamp",
                         "undecryptable", "unusable")

TITLES = {
    "payment_flagged": "A payment needs your review",
    "paid_unlicensed": "An order is paid but has no license",
    "notify_failing": "WeChat Pay notifications keep failing verification",
    "alipay_notify_failing": "Alipay notifications keep failing verification",
    "wechat_unreachable": "WeChat Pay has not answered for 10 minutes",
    "alipay_unreachable": "Alipay has not answered for 10 minutes",
    "backup_failed": "The daily backup failed",
    "replica_stalled": "The off-machine replica has fallen behind",
    "clock_skew": "This server's clock disagrees with WeChat Pay's",
    "wechat_config": "WeChat Pay refuses the shop's request or settings",
    "alipay_config": "Alipay refuses the shop's app settings",
    "bill_differences": "A daily bill (WeChat Pay's or Alipay's) differs from your orders",
    "bill_failed": "A daily bill (WeChat Pay's or Alipay's) could not be checked",
    "complaint_new": "A WeChat Pay complaint arrived: answer it within 24 hours",
    "complaint_due": "A WeChat Pay complaint is near its reply deadline",
}


def raise_alert(kind: str, message: str, *, now: dt.datetime, key: str, to: str | None) -> Alert | None:
    """Record an alert once per ``key``, and mail it to ``to`` unless a mail of this kind went in the last hour."""
    with write_transaction():
        if Alert.get_or_none(Alert.key == key[:120]) is not None:
            return None
        recent = (Alert.select().where((Alert.kind == kind) & (Alert.mailed == True)  # noqa: E712
                                       & (Alert.at > now - MAIL_EVERY)).exists())
        mailed = not recent and to is not None and _enqueue(kind, message, now, key, to)
        alert = Alert.create(kind=kind, key=key[:120], at=now, message=message, mailed=mailed)
    log.error("ALERT %s: %s", kind, message, extra={"alert": kind, "mailed": mailed})
    return alert


def _enqueue(kind: str, message: str, now: dt.datetime, key: str, to: str) -> bool:
    title = TITLES.get(kind, kind)
    text = (f"{message}\n\nSee the admin console for the list of alerts.\n"
            f"At most one mail per kind of alert goes out per hour; later ones wait in the list.\n")
    enqueue_mail(to=to, subject=f"[Learning Buddy Pay] {title}", text=text, kind="alert",
                 now=now, dedupe_key=f"alert:{key}"[:200])
    return True


def recent_alerts(limit: int = 50) -> list[Alert]:
    """Return the newest alerts first, for the dashboard and the command line."""
    return list(Alert.select().order_by(Alert.at.desc(), Alert.id.desc()).limit(limit))


def _known(keys: list[str]) -> set[str]:
    if not keys:
        return set()
    return {a.key for a in Alert.select(Alert.key).where(Alert.key.in_(keys))}


# The payment services whose outage alerts (OutsideService names, as operations.metrics counts their calls).
UNREACHABLE = {"wechat": ("wechat_unreachable", "WeChat Pay"), "alipay": ("alipay_unreachable", "Alipay")}
# WeChat refuses signatures more than 300 s off; say so well before that (THREATS #40).
CLOCK_SKEW_LIMIT = 60
UNLICENSED_LOOKBACK = dt.timedelta(days=2)


def alipay_refused_since(since: dt.datetime) -> Any:
    """Alipay's refused notifications since then: audit events only (billing.alipay_method), read by their index."""
    return AuditEvent.select().where((AuditEvent.action == SQL("'alipay.notification_refused'"))
                                     & (AuditEvent.at > since))


def look_for_trouble(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Raise an alert for each new thing the creator must see; return how many were raised."""
    raised = 0
    flush_calls(shop)  # "failing since" includes this process's latest calls

    def alert(kind: str, message: str, key: str) -> bool:
        return raise_alert(kind, message, now=now, key=key, to=shop.config.alert_email) is not None

    flagged = list(Order.select().where(Order.flag.is_null(False)).order_by(Order.id.desc()).limit(200))
    known = _known([f"flag:{o.public_id}:{o.flag}" for o in flagged])
    for order in flagged:
        key = f"flag:{order.public_id}:{order.flag}"
        if key not in known:
            raised += alert("payment_flagged", f"Order {order.public_id} is flagged {order.flag}: "
                            f"{order.flag_detail or ''}".strip(), key)

    unlicensed = list(Order.select().join(License, JOIN.LEFT_OUTER, on=(License.order == Order.id))
                      # Only payments of the last two days: an indexed range on paid_at, not every order
                      # ever paid, is read every minute.
                      .where(Order.transaction_id.is_null(False) & Order.flag.is_null() & License.id.is_null()
                             & (Order.paid_at <= now - UNLICENSED_AFTER) & (Order.paid_at > now - UNLICENSED_LOOKBACK)
                             & Order.status.not_in(("refunded", "partially_refunded")))
                      .limit(200))
    for order in unlicensed:
        if is_pack(order.out_trade_no):  # a pack of seats is licensed seat by seat (billing.seats)
            continue
        raised += alert("paid_unlicensed", f"Order {order.public_id} was paid at {order.paid_at:%Y-%m-%d %H:%M} "
                        "UTC and still has no license.",
                        f"unlicensed:{order.public_id}")

    failures = (Notification.select().where((Notification.received_at > now - FAILING_WINDOW)
                                            & Notification.result.in_(VERIFICATION_FAILURES)).count())
    if failures >= FAILING_THRESHOLD:
        raised += alert("notify_failing", f"{failures} notifications failed verification or decryption in "
                        "the last 15 minutes. Check LBPAY_WECHATPAY_APIV3_KEY and the WeChat Pay public "
                        "key or certificates.", f"notify_failing:{now:%Y%m%d%H}")
    refused = alipay_refused_since(now - FAILING_WINDOW).count()
    if refused >= FAILING_THRESHOLD:
        raised += alert("alipay_notify_failing", f"{refused} Alipay notifications were refused (signature, app or "
                        "seller) in the last 15 minutes. Check LBPAY_ALIPAY_PUBLIC_KEY_FILE (or the Alipay "
                        "certificates), LBPAY_ALIPAY_APP_ID and LBPAY_ALIPAY_SELLER_ID.",
                        f"alipay_notify_failing:{now:%Y%m%d%H}")

    # Each payment service by the same rule: failing for 10 minutes is one alert (and one mail) per outage.
    for name, (kind, words) in UNREACHABLE.items():
        service = OutsideService.get_or_none(OutsideService.name == name)
        if service is not None and service.failing_since is not None and service.failing_since <= now - WECHAT_DOWN_AFTER:
            raised += alert(kind, f"Calls to {words} have failed since {service.failing_since:%Y-%m-%d %H:%M} UTC.",
                            f"{name}_down:{service.failing_since.isoformat()}")
    skew = shop.wechat.last_clock_skew
    if isinstance(skew, (int, float)) and abs(skew) > CLOCK_SKEW_LIMIT:
        raised += alert("clock_skew", f"This server's clock is {skew:+.0f} s off WeChat Pay's (Date header). "
                        "Signatures are refused beyond 300 s: check NTP.",
                        f"clock_skew:{now:%Y%m%d%H}")
    return {"raised": raised}
