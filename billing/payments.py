"""Believing a payment: verified notifications and queries end in one fulfilment function."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from peewee import IntegrityError

from licensing import issue_license
from models import Course, License, Notification, Order
from wechatpay.errors import DecryptError, MalformedError, VerificationError
from wechatpay.notify import Notification as WeChatNotification
from wechatpay.notify import parse_notification

from . import audit
from database import crash_point
from .mail import enqueue_license_mail, license_line, license_mail
from .shop import LIFETIME, Shop
from database import write_transaction

log = logging.getLogger(__name__)

KEPT_HEADERS = ("wechatpay-timestamp", "wechatpay-nonce", "wechatpay-serial",
                "wechatpay-signature", "wechatpay-signature-type", "content-type", "request-id")
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"


@dataclass(frozen=True)
class NotifyAnswer:
    """How to answer WeChat Pay: 204, or an error status with a short reason."""

    status: int
    message: str = ""


class UnusableTransaction(Exception):
    """An authentic transaction object that lacks what we need to act on it."""


def store_raw_notification(kind: str, body: bytes, headers: Mapping[str, str], now: dt.datetime) -> Notification:
    """Keep a notification exactly as it came, before anything in it is believed."""
    kept = {k: v for k, v in ((k.lower(), v) for k, v in headers.items()) if k in KEPT_HEADERS}
    with write_transaction():
        return Notification.create(kind=kind, received_at=now, headers=json.dumps(kept),
                                   body=body.decode("utf-8", "replace"))


def reject_notification(row: Notification, now: dt.datetime, result: str, reason: str, ip: str | None,
                        answer: NotifyAnswer) -> NotifyAnswer:
    """Record why a notification was refused, with its audit event, and give the answer for WeChat."""
    with write_transaction():
        Notification.update(result=result, reason=reason[:200]).where(Notification.id == row.id).execute()
        audit.record("notification.rejected", at=now, actor="wechat", ip=ip,
                     detail={"notification": row.id, "result": result, "reason": reason[:200]})
    log.warning("notification %s rejected: %s (%s)", row.id, result, reason)
    return answer


class NotificationRefused(Exception):
    """A notification that could not be verified or decrypted, with the answer WeChat should get."""

    def __init__(self, answer: NotifyAnswer) -> None:
        super().__init__(answer.message)
        self.answer = answer


def open_notification(shop: Shop, kind: str, body: bytes, headers: Mapping[str, str], ip: str | None,
                      now: dt.datetime) -> tuple[Notification, WeChatNotification]:
    """Keep a notification raw, then verify and decrypt it, or raise ``NotificationRefused``."""
    row = store_raw_notification(kind, body, headers, now)
    crash_point("notify.after_store")
    try:
        return row, parse_notification(body, headers, shop.verifier, shop.apiv3_keys, now.timestamp())
    except VerificationError as exc:
        probe = str(headers.get("Wechatpay-Signature", "")).startswith(PROBE_PREFIX)
        answer = reject_notification(row, now, "probe" if probe else exc.reason, str(exc), ip,
                                     NotifyAnswer(401, "signature verification failed"))
    except MalformedError as exc:
        answer = reject_notification(row, now, "malformed", str(exc), ip, NotifyAnswer(400, "malformed notification"))
    except DecryptError as exc:
        # The envelope is authentic, so the likeliest cause is our own APIv3 key:
        # answer 5xx so WeChat keeps re-sending until the key is fixed.
        log.error("ALERT: a signed %s notification does not decrypt; is LBPAY_WECHATPAY_APIV3_KEY right?", kind)
        answer = reject_notification(row, now, "undecryptable", str(exc), ip,
                                     NotifyAnswer(500, "resource does not decrypt"))
    raise NotificationRefused(answer)


def receive_transaction_notification(shop: Shop, body: bytes, headers: Mapping[str, str],
                                     ip: str | None = None) -> NotifyAnswer:
    """Keep, verify and act on one payment notification; never fulfil what is not proven."""
    now = shop.now()
    try:
        row, note = open_notification(shop, "transaction", body, headers, ip, now)
    except NotificationRefused as refused:
        return refused.answer

    if note.event_type != "TRANSACTION.SUCCESS":
        with write_transaction():
            Notification.update(result="ignored", event_id=note.id[:64], event_type=note.event_type[:32],
                                reason="not a payment success").where(Notification.id == row.id).execute()
        return NotifyAnswer(204)
    try:
        apply_transaction(shop, note.resource, source="notification", notification=row,
                          event_id=note.id, ip=ip)
    except UnusableTransaction as exc:
        log.error("ALERT: authentic notification %s has an unusable transaction: %s", note.id, exc)
        return reject_notification(row, now, "unusable", str(exc), ip, NotifyAnswer(500, "unexpected transaction"))
    return NotifyAnswer(204)


def _checked(tx: Any) -> dict[str, Any]:
    if not isinstance(tx, dict):
        raise UnusableTransaction("transaction is not an object")
    for name in ("out_trade_no", "mchid", "appid", "trade_state"):
        if not isinstance(tx.get(name), str):
            raise UnusableTransaction(f"{name} missing or not a string")
    if tx["trade_state"] == "SUCCESS":
        amount = tx.get("amount")
        if not isinstance(tx.get("transaction_id"), str) or not 1 <= len(tx["transaction_id"]) <= 32:
            raise UnusableTransaction("transaction_id missing or not a string")
        if not isinstance(amount, dict) or type(amount.get("total")) is not int \
                or not isinstance(amount.get("currency", "CNY"), str):
            raise UnusableTransaction("amount.total missing or not an integer")
    return tx


def apply_transaction(shop: Shop, tx: Any, *, source: str, notification: Notification | None = None,
                      event_id: str | None = None, ip: str | None = None) -> str:
    """Act on WeChat's word about one transaction; the single path to a fulfilled order.

    Returns what happened: ``fulfilled``, ``duplicate``, ``unknown_order``, ``mismatch``,
    ``late_payment``, ``second_payment`` or ``not_paid``.
    """
    tx = _checked(tx)
    try:
        return _apply(shop, tx, source, notification, event_id, ip)
    except IntegrityError:
        # transaction_id is UNIQUE: the same WeChat payment claimed for a second order.
        return _flag_reused_transaction(shop, tx, source, notification, event_id, ip)


def _order_with_course(out_trade_no: str) -> Order | None:
    return (Order.select(Order, Course).join(Course).where(Order.out_trade_no == out_trade_no).first())


def _draft_if_payable(shop: Shop, tx: dict[str, Any], now: dt.datetime) -> LicenseDraft | None:
    """Sign the license before taking the write lock when the payment looks like it will fulfil."""
    if tx["trade_state"] != "SUCCESS" or tx["mchid"] != shop.mchid or tx["appid"] != shop.appid:
        return None
    order = _order_with_course(tx["out_trade_no"])
    amount = tx["amount"]
    if (order is None or order.status != "pending" or order.transaction_id is not None
            or amount["total"] != order.amount_fen or amount.get("currency", "CNY") != order.currency):
        return None
    return draft_license(shop, order, now)


def _mark(notification: Notification | None, result: str, order: Order | None, event_id: str | None,
          reason: str = "") -> None:
    if notification is None:
        return
    Notification.update(result=result, reason=reason[:200] or None, order=order,
                        event_id=(event_id or "")[:64] or None, event_type="TRANSACTION.SUCCESS",
                        out_trade_no=None if order is None else order.out_trade_no,
                        ).where(Notification.id == notification.id).execute()


def _apply(shop: Shop, tx: dict[str, Any], source: str, notification: Notification | None,
           event_id: str | None, ip: str | None) -> str:
    now = shop.now()
    facts = {"source": source, "transaction_id": tx.get("transaction_id"),
             "trade_state": tx["trade_state"], "notification": notification.id if notification else None}
    draft = _draft_if_payable(shop, tx, now)
    with write_transaction():
        order = _order_with_course(tx["out_trade_no"])
        if tx["mchid"] != shop.mchid or tx["appid"] != shop.appid:
            reason = f"mchid/appid {tx['mchid']}/{tx['appid']} are not ours"
            if order is not None and order.status == "pending":
                Order.update(flag="MERCHANT_MISMATCH", flag_detail=reason).where(Order.id == order.id).execute()
            audit.record("payment.merchant_mismatch", at=now, actor="wechat", order=order, ip=ip,
                         detail={**facts, "mchid": tx["mchid"], "appid": tx["appid"]})
            _mark(notification, "mismatch", order, event_id, reason)
            log.error("ALERT: payment for another merchant or app: %s", reason)
            return "mismatch"
        if order is None:
            audit.record("payment.unknown_order", at=now, actor="wechat", ip=ip,
                         detail={**facts, "out_trade_no": tx["out_trade_no"][:32]})
            _mark(notification, "unknown_order", None, event_id)
            return "unknown_order"
        if tx["trade_state"] != "SUCCESS":
            if order.trade_state != tx["trade_state"][:16]:  # most answers are a NOTPAY we knew already
                Order.update(trade_state=tx["trade_state"][:16]).where(Order.id == order.id).execute()
            _mark(notification, "not_paid", order, event_id)
            return "not_paid"
        amount = tx["amount"]
        currency = amount.get("currency", "CNY")
        if amount["total"] != order.amount_fen or currency != order.currency:
            reason = f"paid {amount['total']} {currency}, order is {order.amount_fen} {order.currency}"
            if order.flag != "AMOUNT_MISMATCH":
                Order.update(flag="AMOUNT_MISMATCH", flag_detail=reason).where(Order.id == order.id).execute()
                audit.record("payment.amount_mismatch", at=now, actor="wechat", order=order, ip=ip,
                             detail={**facts, "paid_fen": amount["total"], "currency": currency[:8]})
                log.error("ALERT: order %s %s", order.public_id, reason)
            _mark(notification, "mismatch", order, event_id, reason)
            return "mismatch"
        if order.transaction_id == tx["transaction_id"]:
            _mark(notification, "duplicate", order, event_id)
            return "duplicate"
        paid_fields = dict(transaction_id=tx["transaction_id"], paid_at=now, trade_state="SUCCESS",
                           payer_openid=(tx.get("payer") or {}).get("openid"),
                           bank_type=tx.get("bank_type"), success_time=tx.get("success_time"))
        if order.transaction_id is not None:
            reason = f"second payment {tx['transaction_id']} after {order.transaction_id}"
            Order.update(flag="SECOND_PAYMENT", flag_detail=reason).where(Order.id == order.id).execute()
            audit.record("payment.second_payment", at=now, actor="wechat", order=order, ip=ip, detail=facts)
            _mark(notification, "second_payment", order, event_id, reason)
            log.error("ALERT: order %s %s", order.public_id, reason)
            return "second_payment"
        if order.status != "pending":
            Order.update(flag="LATE_PAYMENT", flag_detail=f"paid while {order.status}",
                         **paid_fields).where(Order.id == order.id).execute()
            audit.record("payment.late", at=now, actor="wechat", order=order, ip=ip,
                         detail={**facts, "status": order.status})
            _mark(notification, "late_payment", order, event_id)
            log.error("ALERT: payment for order %s arrived while it was %s", order.public_id, order.status)
            return "late_payment"
        changed = (Order.update(status="fulfilled", **paid_fields)
                   .where((Order.id == order.id) & (Order.status == "pending")).execute())
        if changed != 1:  # pragma: no cover - the IMMEDIATE lock makes this unreachable on SQLite
            _mark(notification, "duplicate", order, event_id)
            return "duplicate"
        paid = audit.record("order.paid", at=now, actor="wechat", order=order, ip=ip,
                            detail={**facts, "amount_fen": amount["total"]})
        issued, used = issue_license_for(shop, order, now, draft)
        audit.record("license.issued", at=now, order=order, after=paid,
                     detail={"license": issued.license_id, "kid": issued.kid,
                             "expires_at": issued.expires_at.isoformat()})
        enqueue_license_mail(order, issued, now, content=used.mail)
        _mark(notification, "fulfilled", order, event_id)
        crash_point("fulfil.before_commit")
    crash_point("fulfil.after_commit")
    log.info("order %s fulfilled via %s", order.public_id, source)
    return "fulfilled"


@dataclass(frozen=True)
class LicenseDraft:
    """A license signed before the write lock, usable only if what it assumed still holds inside."""

    order_id: int
    license_id: str
    expires_at: dt.datetime
    kid: str
    text: str
    mail: tuple[str, str, str] | None


def _license_terms(order: Order, course: Course, now: dt.datetime, new_id: str) -> tuple[str, dt.datetime]:
    start = now
    license_id = new_id
    if course.plan == "subscription":
        # A renewal keeps the license id, so the extension replaces the old key in place,
        # and extends from the later of now and the current expiry.
        current = (License.select(License.license_id, License.expires_at)
                   .where((License.course == course.id) & (License.buyer == order.buyer_id)
                          & (License.buyer.is_null(False)) & (License.revoked_at.is_null()))
                   .order_by(License.expires_at.desc()).first())
        if current is not None:
            license_id = current.license_id
            start = max(now, current.expires_at)
    period = dt.timedelta(days=course.period_days) if course.period_days else LIFETIME
    return license_id, start + period


def draft_license(shop: Shop, order: Order, now: dt.datetime) -> LicenseDraft:
    """Sign an order's license (and render its mail) outside any transaction: the slow part of fulfilment."""
    course = order.course
    license_id, expires_at = _license_terms(order, course, now, str(uuid.uuid4()))
    key = shop.license_keys.active
    text = issue_license(key, license_id=license_id, course_id=course.id, order_id=order.public_id,
                         plan=course.plan, created_at=now, expires_at=expires_at,
                         max_downloads=course.download_limit)
    mail = None
    if order.email:
        mail = license_mail(license_line(course_id=course.id, course_title=course.title, license_id=license_id,
                                         order_id=order.public_id, out_trade_no=order.out_trade_no,
                                         expires_at=expires_at, key=text), course.plan)
    return LicenseDraft(order_id=order.id, license_id=license_id, expires_at=expires_at, kid=key.kid,
                        text=text, mail=mail)


def issue_license_for(shop: Shop, order: Order, now: dt.datetime,
                      draft: LicenseDraft | None = None) -> tuple[License, LicenseDraft]:
    """Store the license for a paid order, signing it afresh unless ``draft`` still fits; call inside its transaction."""
    course = order.course
    if draft is not None:
        terms = _license_terms(order, course, now, draft.license_id)
        if (draft.order_id, draft.license_id, draft.expires_at, draft.kid) != (
                order.id, *terms, shop.license_keys.active.kid):
            draft = None  # a renewal or a key rotation moved on since the draft was made
    if draft is None:
        draft = draft_license(shop, order, now)
    license = License.create(license_id=draft.license_id, order=order, course=course, buyer=order.buyer_id,
                             key=draft.text, kid=draft.kid, plan=course.plan, issued_at=now,
                             expires_at=draft.expires_at)
    return license, draft


def _flag_reused_transaction(shop: Shop, tx: dict[str, Any], source: str,
                             notification: Notification | None, event_id: str | None,
                             ip: str | None) -> str:
    now = shop.now()
    with write_transaction():
        order = Order.get_or_none(Order.out_trade_no == tx["out_trade_no"])
        reason = f"transaction_id {tx['transaction_id']} already belongs to another order"
        if order is not None:
            Order.update(flag="TRANSACTION_REUSED", flag_detail=reason).where(Order.id == order.id).execute()
        audit.record("payment.transaction_reused", at=now, actor="wechat", order=order, ip=ip,
                     detail={"source": source, "transaction_id": tx["transaction_id"]})
        _mark(notification, "mismatch", order, event_id, reason)
    log.error("ALERT: %s", reason)
    return "mismatch"


def sync_with_wechat(shop: Shop, order: Order, *, source: str, attempts: int | None = None) -> str:
    """Ask WeChat Pay about one order and act on the answer through ``apply_transaction``."""
    tx = shop.wechat.query_by_out_trade_no(order.out_trade_no, attempts=attempts)
    return apply_transaction(shop, tx, source=source)
