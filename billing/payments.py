"""Believing a payment: verified notifications and queries end in one fulfilment function.

A notification is verified before anything of it is stored: an authentic one is kept in full in
the same transaction as what it changes; of one that fails verification only its headers, size,
body hash and the reason are kept, and no more than a few per client and per hour.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from peewee import SQL, IntegrityError

from licensing import issue_license
from models import AuditEvent, Course, License, Notification, Order, db
from wechatpay.errors import DecryptError, MalformedError, VerificationError
from wechatpay.notify import Notification as WeChatNotification
from wechatpay.notify import parse_notification

from database import crash_point, grouped_write, write_transaction

from . import audit, rows
from .mail import prepare_license_mail
from .shop import LIFETIME, Shop, is_pack

log = logging.getLogger(__name__)

KEPT_HEADERS = ("wechatpay-timestamp", "wechatpay-nonce", "wechatpay-serial",
                "wechatpay-signature", "wechatpay-signature-type", "content-type", "request-id")
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"
# What an unverifiable request may cost us in storage: a stub each, this many per client address
# and this many in all per hour; past either, it is logged and answered, and nothing is written.
REFUSALS_KEPT_PER_CLIENT = 20
REFUSALS_KEPT_PER_HOUR = 500
REFUSAL_HEADER_CHARS = 512
HOUR = dt.timedelta(hours=1)
# A stub is evidence for a month (the creator's look at an attack); then only its day's count stays.
STUBS_KEPT_FOR = dt.timedelta(days=30)
STUBS_PRUNED_PER_RUN = 20_000
BEIJING = dt.timezone(dt.timedelta(hours=8))
# Trade states that prove a payment: REFUND (转入退款) is a paid order a refund was made for since.
PAID_STATES = ("SUCCESS", "REFUND")
# Paid, then refunded at WeChat before we learned of the payment: recorded, and left to the creator.
REFUNDED_AT_WECHAT = "REFUNDED_AT_WECHAT"


@dataclass(frozen=True)
class NotifyAnswer:
    """How to answer WeChat Pay: 204, or an error status with a short reason."""

    status: int
    message: str = ""


class UnusableTransaction(Exception):
    """An authentic transaction object that lacks what we need to act on it."""


class NotificationRefused(Exception):
    """A notification that could not be verified or decrypted, with the answer WeChat should get."""

    def __init__(self, answer: NotifyAnswer) -> None:
        super().__init__(answer.message)
        self.answer = answer


@dataclass(frozen=True)
class Received:
    """A notification as it came, not yet stored: it is written with whatever it changes, in one transaction."""

    kind: str
    body: bytes
    headers: Mapping[str, str]
    at: dt.datetime
    event_id: str | None = None
    event_type: str | None = None


def _kept_headers(headers: Mapping[str, str], limit: int | None = None) -> dict[str, str]:
    kept = {k: v for k, v in ((k.lower(), v) for k, v in headers.items()) if k in KEPT_HEADERS}
    return kept if limit is None else {k: v[:limit] for k, v in kept.items()}


def keep_notification(received: Received, result: str, *, order: Order | None = None, reason: str = "",
                      out_trade_no: str | None = None) -> int | None:
    """Store an authentic notification in full with what came of it; call inside the transaction it caused."""
    return prepare_notification(received, result, order=order, reason=reason, out_trade_no=out_trade_no).insert()


def prepare_notification(received: Received, result: str, *, order: Order | None = None, reason: str = "",
                         out_trade_no: str | None = None) -> rows.Statement:
    """The insert ``keep_notification`` runs, made ready before the write lock."""
    return rows.prepare_insert(Notification, {
        "kind": received.kind, "received_at": received.at, "headers": json.dumps(_kept_headers(received.headers)),
        "body": received.body.decode("utf-8", "replace"), "result": result, "reason": reason[:200] or None,
        "event_id": (received.event_id or "")[:64] or None, "event_type": (received.event_type or "")[:32] or None,
        "out_trade_no": out_trade_no if out_trade_no is not None else (order.out_trade_no if order else None),
        "order": order})


def _refusals_since(since: dt.datetime, ip: str | None = None, *, per_client: bool = False) -> int:
    # A literal, not a parameter: it is what lets the planner use the partial index for this action.
    query = AuditEvent.select().where((AuditEvent.action == SQL("'notification.rejected'")) & (AuditEvent.at >= since))
    if per_client:
        query = query.where(AuditEvent.ip.is_null() if ip is None else AuditEvent.ip == ip)
    return int(query.count())


def _over_the_caps(since: dt.datetime, ip: str | None) -> bool:
    return (_refusals_since(since, ip, per_client=True) >= REFUSALS_KEPT_PER_CLIENT
            or _refusals_since(since) >= REFUSALS_KEPT_PER_HOUR)


def refuse_unverified(received: Received, result: str, reason: str, ip: str | None) -> bool:
    """Keep a stub of a notification that failed verification, within the caps; return whether it was kept."""
    since = received.at - HOUR
    if _over_the_caps(since, ip):  # a read: a flood past the cap never queues for the write lock
        return False
    with write_transaction():
        if _over_the_caps(since, ip):  # again inside, where no other writer counts meanwhile
            return False
        stub = {**_kept_headers(received.headers, REFUSAL_HEADER_CHARS), "body-size": str(len(received.body)),
                "body-sha256": hashlib.sha256(received.body).hexdigest()}
        row = Notification.create(kind=received.kind, received_at=received.at, headers=json.dumps(stub),
                                  body="", result=result, reason=reason[:200])
        audit.record("notification.rejected", at=received.at, actor="wechat", ip=ip,
                     detail={"notification": row.id, "result": result, "reason": reason[:200]})
    return True


def prune_refused_stubs(now: dt.datetime) -> int:
    """Delete stubs of unverifiable notifications older than 30 days; one audit event keeps their count per day."""
    cutoff = now - STUBS_KEPT_FOR
    with write_transaction():
        stubs = list(Notification.select(Notification.id, Notification.received_at).where(
            (Notification.received_at < cutoff) & (Notification.body == "") & Notification.order.is_null()
            & Notification.event_id.is_null()).order_by(Notification.id).limit(STUBS_PRUNED_PER_RUN))
        if not stubs:
            return 0
        per_day: dict[str, int] = {}
        for stub in stubs:
            day = stub.received_at.astimezone(BEIJING).date().isoformat()
            per_day[day] = per_day.get(day, 0) + 1
        ids = [stub.id for stub in stubs]
        for start in range(0, len(ids), 500):
            Notification.delete().where(Notification.id.in_(ids[start:start + 500])).execute()
        audit.record("notification.stubs_pruned", at=now,
                     detail={"per_day": dict(sorted(per_day.items())), "older_than": cutoff.isoformat()})
    return len(stubs)


def refuse_authentic(received: Received, result: str, reason: str, ip: str | None) -> None:
    """Keep a signed notification we cannot act on, in full, with the reason and its audit event."""
    with write_transaction():
        row_id = keep_notification(received, result, reason=reason)
        audit.record("notification.rejected", at=received.at, actor="wechat", ip=ip,
                     detail={"notification": row_id, "result": result, "reason": reason[:200]})


def open_notification(shop: Shop, kind: str, body: bytes, headers: Mapping[str, str], ip: str | None,
                      now: dt.datetime) -> tuple[Received, WeChatNotification]:
    """Verify and decrypt a notification before storing anything of it, or raise ``NotificationRefused``."""
    received = Received(kind=kind, body=body, headers=headers, at=now)
    try:
        note = parse_notification(body, headers, shop.verifier, shop.apiv3_keys, now.timestamp())
    except VerificationError as exc:
        probe = str(headers.get("Wechatpay-Signature", "")).startswith(PROBE_PREFIX)
        result = "probe" if probe else exc.reason
        kept = refuse_unverified(received, result, str(exc), ip)
        log.warning("%s notification refused: %s (%s)%s", kind, result, exc, "" if kept else "; not kept, over the cap")
        raise NotificationRefused(NotifyAnswer(401, "signature verification failed")) from None
    except MalformedError as exc:
        refuse_authentic(received, "malformed", str(exc), ip)
        log.warning("signed %s notification is malformed: %s", kind, exc)
        raise NotificationRefused(NotifyAnswer(400, "malformed notification")) from None
    except DecryptError as exc:
        # The envelope is authentic, so the likeliest cause is our own APIv3 key:
        # answer 5xx so WeChat keeps re-sending until the key is fixed.
        log.error("ALERT: a signed %s notification does not decrypt; is LBPAY_WECHATPAY_APIV3_KEY right?", kind)
        refuse_authentic(received, "undecryptable", str(exc), ip)
        raise NotificationRefused(NotifyAnswer(500, "resource does not decrypt")) from None
    crash_point("notify.after_store")  # verified, nothing written yet: a crash here loses nothing WeChat will not re-send
    return Received(kind, body, headers, now, note.id, note.event_type), note


def receive_transaction_notification(shop: Shop, body: bytes, headers: Mapping[str, str],
                                     ip: str | None = None) -> NotifyAnswer:
    """Verify, keep and act on one payment notification; never fulfil what is not proven."""
    now = shop.now()
    try:
        received, note = open_notification(shop, "transaction", body, headers, ip, now)
    except NotificationRefused as refused:
        return refused.answer
    if note.event_type != "TRANSACTION.SUCCESS":
        with write_transaction():
            keep_notification(received, "ignored", reason="not a payment success")
        return NotifyAnswer(204)
    try:
        apply_transaction(shop, note.resource, source="notification", received=received, ip=ip)
    except UnusableTransaction as exc:
        log.error("ALERT: authentic notification %s has an unusable transaction: %s", note.id, exc)
        refuse_authentic(received, "unusable", str(exc), ip)
        return NotifyAnswer(400, "unusable transaction")
    return NotifyAnswer(204)


def _optional_string(tx: Mapping[str, Any], name: str, longest: int) -> None:
    value = tx.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > longest):
        raise UnusableTransaction(f"{name} is not a string of at most {longest} characters")


def _checked(tx: Any) -> dict[str, Any]:
    if not isinstance(tx, dict):
        raise UnusableTransaction("transaction is not an object")
    for name in ("out_trade_no", "mchid", "appid", "trade_state"):
        if not isinstance(tx.get(name), str):
            raise UnusableTransaction(f"{name} missing or not a string")
    if tx["trade_state"] in PAID_STATES:
        amount = tx.get("amount")
        if not isinstance(tx.get("transaction_id"), str) or not 1 <= len(tx["transaction_id"]) <= 32:
            raise UnusableTransaction("transaction_id missing or not a string")
        if not isinstance(amount, dict) or type(amount.get("total")) is not int \
                or not isinstance(amount.get("currency", "CNY"), str):
            raise UnusableTransaction("amount.total missing or not an integer")
        payer = tx.get("payer")
        if payer is not None and not isinstance(payer, dict):
            raise UnusableTransaction("payer is not an object")
        _optional_string(payer or {}, "openid", 128)
        _optional_string(tx, "bank_type", 32)
        _optional_string(tx, "success_time", 32)
    return tx


# --- the verdict: what one transaction means for one order ----------------------------------

@dataclass(frozen=True)
class Verdict:
    """What a transaction means for an order: an outcome and, for the flagged ones, why."""

    outcome: str  # fulfil | duplicate | not_ours | unknown_order | not_paid | wrong_amount | second_payment | late
    #               | held | refunded
    reason: str = ""


def judge_payment(tx: Mapping[str, Any], order: Order | None, mchid: str, appid: str) -> Verdict:
    """Decide what a checked transaction means for the order it names; reads, never writes."""
    if tx["mchid"] != mchid or tx["appid"] != appid:
        return Verdict("not_ours", f"mchid/appid {tx['mchid'][:32]}/{tx['appid'][:32]} are not ours")
    if order is None:
        return Verdict("unknown_order")
    method = tx.get("method", "wechat")
    if method != getattr(order, "payment_method", "wechat"):  # a trade of one method naming the other's order
        return Verdict("not_ours", f"a {str(method)[:8]} payment for an order paid through {order.payment_method}")
    if tx["trade_state"] not in PAID_STATES:
        return Verdict("not_paid")
    total, currency = tx["amount"]["total"], tx["amount"].get("currency", "CNY")
    if total != order.amount_fen or currency != order.currency:
        return Verdict("wrong_amount", f"paid {total} {currency[:8]}, order is {order.amount_fen} {order.currency}")
    if order.transaction_id == tx["transaction_id"]:
        return Verdict("duplicate")
    if order.transaction_id is not None:
        return Verdict("second_payment", f"second payment {tx['transaction_id']} after {order.transaction_id}")
    if tx["trade_state"] == "REFUND":  # whatever the order's state here: the money went back, in part or all
        return Verdict("refunded", f"paid {total} fen ({tx['transaction_id']}) and refunded at WeChat")
    if order.status != "pending":
        return Verdict("late", f"paid while {order.status}")
    if order.flag is not None:  # the creator must look first (an underpayment before, say): never fulfil past it
        return Verdict("held", f"paid in full while flagged {order.flag}")
    return Verdict("fulfil")


def expected_ids(shop: Shop, tx: Mapping[str, Any]) -> tuple[str, str]:
    """Who a transaction must name to be ours: WeChat's mchid and appid, or Alipay's seller and app."""
    alipay = getattr(shop, "alipay", None)
    if tx.get("method") == "alipay" and alipay is not None:
        return alipay.ids  # type: ignore[no-any-return]
    return shop.mchid, shop.appid


@dataclass
class Payment:
    """Everything the outcome functions need about one transaction being applied."""

    shop: Shop
    tx: dict[str, Any]
    source: str
    now: dt.datetime
    received: Received | None = None
    ip: str | None = None
    draft: LicenseDraft | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def keep(self, result: str, order: Order | None, reason: str = "") -> None:
        """Store the notification (if one brought this) with what came of it."""
        if self.received is not None:
            keep_notification(self.received, result, order=order, reason=reason)

    def paid_fields(self, trade_state: str = "SUCCESS") -> dict[str, Any]:
        """The order columns a payment fills in."""
        return dict(transaction_id=self.tx["transaction_id"], paid_at=self.now, trade_state=trade_state,
                    payer_openid=(self.tx.get("payer") or {}).get("openid"),
                    bank_type=self.tx.get("bank_type"), success_time=self.tx.get("success_time"))


def apply_transaction(shop: Shop, tx: Any, *, source: str, received: Received | None = None,
                      ip: str | None = None) -> str:
    """Act on WeChat's word about one transaction; the single path to a fulfilled order.

    Returns what happened: ``fulfilled``, ``duplicate``, ``unknown_order``, ``mismatch``,
    ``late_payment``, ``second_payment``, ``held``, ``refunded`` or ``not_paid``.
    """
    payment = Payment(shop=shop, tx=_checked(tx), source=source, now=shop.now(), received=received, ip=ip)
    payment.facts = {"source": source, "transaction_id": tx.get("transaction_id"), "trade_state": tx["trade_state"]}
    order = _order_with_course(tx["out_trade_no"])
    verdict = judge_payment(tx, order, *expected_ids(shop, tx))
    ready: Fulfilment | None = None
    if verdict.outcome == "fulfil" and order is not None and not is_pack(order.out_trade_no):
        # The slow part, and every row's values, before the write lock: inside it only SQL is left.
        # (A pack of seats issues no license of its own: fulfilled() hands it to its seat page.)
        payment.draft = draft_license(shop, order, payment.now)
        ready = Fulfilment.prepare(payment, order, payment.draft)

    def write() -> str:
        if ready is not None and order is not None and ready.claim.run().rowcount == 1:
            # Still pending and unpaid when written: the verdict read before the lock holds
            # (amount and currency never change), so nothing needs reading again.
            result = ready.write() if _draft_fits(shop, order, payment.now, ready.draft) else fulfilled(payment, order)
        else:  # not payable when read, or it moved on since: judge what is there now
            now_order = _order_with_course(tx["out_trade_no"])
            now_verdict = judge_payment(tx, now_order, *expected_ids(shop, tx))
            result = OUTCOMES[now_verdict.outcome](payment, now_order, now_verdict)
        if result == "fulfilled":
            crash_point("fulfil.before_commit")
        return result

    try:
        # One transaction with whatever other notifications this process is writing at the moment
        # (group commit); answered only once that transaction has committed.
        result = grouped_write(write)
    except IntegrityError:
        # transaction_id is UNIQUE: the same WeChat payment claimed for a second order.
        return _flag_reused_transaction(payment)
    if result == "fulfilled":
        crash_point("fulfil.after_commit")
        log.info("order %s fulfilled via %s", tx["out_trade_no"], source)
    return result


@functools.cache
def _order_sql(param: str) -> str:
    return (f'SELECT {rows.select_list(Order, "o")}, {rows.select_list(Course, "c")} FROM "order" AS o '
            f'JOIN "course" AS c ON c."id" = o."course_id" WHERE o."out_trade_no" = {param}')


def _order_with_course(out_trade_no: str) -> Order | None:
    """The order a transaction names, with its course, in one prepared query."""
    found = db.execute_sql(_order_sql(db.obj.param), (out_trade_no,)).fetchone()
    if found is None:
        return None
    course, _ = rows.instance(Course, found[len(Order._meta.sorted_fields):])
    order: Order = rows.instance(Order, found, course=course)[0]
    return order


def _flag(order: Order, flag: str, reason: str, **fields: Any) -> None:
    Order.update(flag=flag, flag_detail=reason, **fields).where(Order.id == order.id).execute()


def not_ours(p: Payment, order: Order | None, verdict: Verdict) -> str:
    """A payment to another merchant or app: flag a pending order, never fulfil."""
    if order is not None and order.status == "pending":
        _flag(order, "MERCHANT_MISMATCH", verdict.reason)
    audit.record("payment.merchant_mismatch", at=p.now, actor="wechat", order=order, ip=p.ip,
                 detail={**p.facts, "mchid": p.tx["mchid"][:32], "appid": p.tx["appid"][:32]})
    p.keep("mismatch", order, verdict.reason)
    log.error("ALERT: payment for another merchant or app: %s", verdict.reason)
    return "mismatch"


def unknown_order(p: Payment, order: Order | None, verdict: Verdict) -> str:
    """A payment for an order we never made: keep the evidence."""
    audit.record("payment.unknown_order", at=p.now, actor="wechat", ip=p.ip,
                 detail={**p.facts, "out_trade_no": p.tx["out_trade_no"][:32]})
    p.keep("unknown_order", None)
    return "unknown_order"


def not_paid(p: Payment, order: Order, verdict: Verdict) -> str:
    """WeChat says the order is not paid (yet): remember its trade state."""
    if order.trade_state != p.tx["trade_state"][:16]:  # most answers are a NOTPAY we knew already
        Order.update(trade_state=p.tx["trade_state"][:16]).where(Order.id == order.id).execute()
    p.keep("not_paid", order)
    return "not_paid"


def wrong_amount(p: Payment, order: Order, verdict: Verdict) -> str:
    """Paid, but not the order's amount or currency: flag it for the creator."""
    if order.flag != "AMOUNT_MISMATCH":
        amount = p.tx["amount"]
        _flag(order, "AMOUNT_MISMATCH", verdict.reason)
        audit.record("payment.amount_mismatch", at=p.now, actor="wechat", order=order, ip=p.ip,
                     detail={**p.facts, "paid_fen": amount["total"], "currency": amount.get("currency", "CNY")[:8]})
        log.error("ALERT: order %s %s", order.public_id, verdict.reason)
    p.keep("mismatch", order, verdict.reason)
    return "mismatch"


def duplicate(p: Payment, order: Order, verdict: Verdict) -> str:
    """The payment we already applied, told again."""
    p.keep("duplicate", order)
    return "duplicate"


def second_payment(p: Payment, order: Order, verdict: Verdict) -> str:
    """A second, different payment for an order already paid: flag it for a refund."""
    _flag(order, "SECOND_PAYMENT", verdict.reason)
    audit.record("payment.second_payment", at=p.now, actor="wechat", order=order, ip=p.ip, detail=p.facts)
    p.keep("second_payment", order, verdict.reason)
    log.error("ALERT: order %s %s", order.public_id, verdict.reason)
    return "second_payment"


def late_payment(p: Payment, order: Order, verdict: Verdict) -> str:
    """Paid after the order was closed: record the payment and flag it, never issue silently."""
    _flag(order, "LATE_PAYMENT", verdict.reason, **p.paid_fields())
    audit.record("payment.late", at=p.now, actor="wechat", order=order, ip=p.ip,
                 detail={**p.facts, "status": order.status})
    p.keep("late_payment", order, verdict.reason)
    log.error("ALERT: payment for order %s arrived while it was %s", order.public_id, order.status)
    return "late_payment"


def held_payment(p: Payment, order: Order, verdict: Verdict) -> str:
    """Paid in full, but the order is flagged: record the payment, keep the flag, issue nothing."""
    Order.update(**p.paid_fields()).where(Order.id == order.id).execute()
    audit.record("payment.held", at=p.now, actor="wechat", order=order, ip=p.ip,
                 detail={**p.facts, "flag": order.flag})
    p.keep("held", order, verdict.reason)
    log.error("ALERT: order %s %s; nothing issued", order.public_id, verdict.reason)
    return "held"


def record_refunded_payment(order: Order, *, paid: dict[str, Any], why: str, source: str, at: dt.datetime,
                            ip: str | None = None) -> bool:
    """Record a payment WeChat says was refunded before we knew of it: flagged, alerted, nothing issued.

    A query answering REFUND, or a refund's notification, for an order we hold unpaid (pending,
    or closed here) proves the learner paid and that a refund was made since, in part or in full
    (the usual story: the payment's notification was lost, the learner complained, and the
    creator refunded by hand in 商户平台). Issuing the license would give away what was paid
    back; calling it unpaid would lose the payment from our books. So the payment is recorded,
    the order flagged for the creator (the alerts job tells them) and the refund, when WeChat
    tells of it, adopted by the usual path. Call inside the write transaction; False when the
    order had a payment recorded meanwhile.
    """
    detail = f"{why}, before this shop learned of the payment; no license issued"
    if order.flag is not None:
        detail += f" (was flagged {order.flag})"
    if not rows.update(Order, {"flag": REFUNDED_AT_WECHAT, "flag_detail": detail[:300], "paid_at": at,
                               "trade_state": "REFUND", **paid},
                       {"id": order.id, "transaction_id": None}):
        return False
    audit.record("payment.refunded_at_wechat", at=at, actor="wechat", order=order, ip=ip,
                 detail={"source": source, "transaction_id": paid["transaction_id"], "amount_fen": order.amount_fen,
                         "status": order.status})
    log.error("ALERT: order %s %s", order.public_id, detail)
    return True


def refunded_at_wechat(p: Payment, order: Order, verdict: Verdict) -> str:
    """WeChat says paid and refunded (REFUND) for an order we hold unpaid: record it, flag it, issue nothing."""
    paid = {k: v for k, v in p.paid_fields("REFUND").items() if k not in ("paid_at", "trade_state")}
    if not record_refunded_payment(order, paid=paid, why=verdict.reason, source=p.source, at=p.now, ip=p.ip):
        p.keep("duplicate", order)
        return "duplicate"
    p.keep("refunded", order, verdict.reason)
    return "refunded"


def _claim_statement(p: Payment, order: Order) -> rows.Statement:
    """The compare-and-set: mark the order paid only if it is still pending and unpaid as written."""
    return rows.prepare_update(Order, {"status": "fulfilled", **p.paid_fields()},
                               {"id": order.id, "status": "pending", "transaction_id": None})


def _claim(p: Payment, order: Order) -> bool:
    return int(_claim_statement(p, order).run().rowcount) == 1


def fulfil(p: Payment, order: Order, verdict: Verdict) -> str:
    """Mark a pending order paid and issue its license, only if it is still pending when written."""
    if not _claim(p, order):  # the order moved on since it was read (the write lock makes this rare)
        p.keep("duplicate", order)
        return "duplicate"
    return fulfilled(p, order)


def fulfilled(p: Payment, order: Order) -> str:
    """Write what follows a claimed payment: the license, two chained audit events, its mail, the notification."""
    if is_pack(order.out_trade_no):  # a pack of seats: licensed seat by seat on its seat page
        from .seats import fulfil_pack

        fulfil_pack(p.shop, order, p.now, {**p.facts, "amount_fen": p.tx["amount"]["total"]}, p.ip)
        p.keep("fulfilled", order)
        return "fulfilled"
    draft = p.draft
    if draft is None or not _draft_fits(p.shop, order, p.now, draft):
        draft = draft_license(p.shop, order, p.now)
    return Fulfilment.prepare(p, order, draft).write()


@dataclass(frozen=True)
class Fulfilment:
    """The rows a claimed payment writes, every value made ready before the write lock.

    Inside the lock ``write`` only runs the statements (and hashes the two audit events onto the
    chain), so the lock every writer waits for is held for the database's own work.
    """

    claim: rows.Statement
    license: rows.Statement
    events: audit.Prepared
    mail: rows.Statement | None
    notification: rows.Statement | None
    draft: LicenseDraft

    @classmethod
    def prepare(cls, p: Payment, order: Order, draft: LicenseDraft) -> "Fulfilment":
        course = order.course
        events = audit.prepare_all([
            audit.Event("order.paid", p.now, "wechat", order, {**p.facts, "amount_fen": p.tx["amount"]["total"]},
                        p.ip),
            audit.Event("license.issued", p.now, "system", order, {
                "license": draft.license_id, "kid": draft.kid, "expires_at": draft.expires_at.isoformat()})])
        notification = None
        if p.received is not None:
            notification = prepare_notification(p.received, "fulfilled", order=order)
        return cls(claim=_claim_statement(p, order), license=_license_row(order, course, p.now, draft),
                   events=events, mail=prepare_license_mail(order, p.now), notification=notification, draft=draft)

    def write(self) -> str:
        """Write everything but the claim (already made); call inside the transaction."""
        self.license.insert()
        self.events.append()
        if self.mail is not None:
            self.mail.insert()
        if self.notification is not None:
            self.notification.insert()
        return "fulfilled"


OUTCOMES: dict[str, Callable[[Payment, Any, Verdict], str]] = {
    "not_ours": not_ours, "unknown_order": unknown_order, "not_paid": not_paid, "wrong_amount": wrong_amount,
    "duplicate": duplicate, "second_payment": second_payment, "late": late_payment, "fulfil": fulfil,
    "held": held_payment, "refunded": refunded_at_wechat,
}


@dataclass(frozen=True)
class LicenseDraft:
    """A license signed before the write lock, usable only if what it assumed still holds inside."""

    order_id: int
    license_id: str
    expires_at: dt.datetime
    kid: str
    text: str


def current_subscription_key(course: Course, buyer_id: int | None) -> License | None:
    """The buyer's latest unrevoked key for a subscription course: the one a renewal extends."""
    if buyer_id is None:
        return None
    return (License.select().where((License.course == course.id) & (License.buyer == buyer_id)
                                   & (License.revoked_at.is_null()))
            .order_by(License.expires_at.desc(), License.id.desc()).first())


def _license_terms(order: Order, course: Course, now: dt.datetime, new_id: str) -> tuple[str, dt.datetime]:
    start = now
    license_id = new_id
    if course.plan == "subscription":
        # A renewal keeps the license id, so the extension replaces the old key in place,
        # and extends from the later of now and the current expiry.
        current = current_subscription_key(course, order.buyer_id)
        if current is not None:
            license_id = current.license_id
            ends: dt.datetime = current.expires_at
            start = max(now, ends)
    period = dt.timedelta(days=course.period_days) if course.period_days else LIFETIME
    return license_id, start + period


def draft_license(shop: Shop, order: Order, now: dt.datetime) -> LicenseDraft:
    """Sign an order's license outside any transaction: the slow part of fulfilment."""
    course = order.course
    license_id, expires_at = _license_terms(order, course, now, str(uuid.uuid4()))
    key = shop.license_keys.active
    text = issue_license(key, license_id=license_id, course_id=course.id, order_id=order.public_id,
                         plan=course.plan, created_at=now, expires_at=expires_at,
                         max_downloads=course.download_limit)
    return LicenseDraft(order_id=order.id, license_id=license_id, expires_at=expires_at, kid=key.kid, text=text)


def issue_license_for(shop: Shop, order: Order, now: dt.datetime, draft: LicenseDraft | None = None) -> LicenseDraft:
    """Store the license for a paid order, signing it afresh unless ``draft`` still fits; call inside its transaction."""
    if draft is None or not _draft_fits(shop, order, now, draft):
        draft = draft_license(shop, order, now)
    _license_row(order, order.course, now, draft).insert()
    return draft


def _draft_fits(shop: Shop, order: Order, now: dt.datetime, draft: LicenseDraft) -> bool:
    """Whether a license signed before the lock still says what one signed now would (call inside it).

    A renewal of the same subscription, or a key rotation, moved on since the draft was made.
    """
    terms = _license_terms(order, order.course, now, draft.license_id)
    return (draft.order_id, draft.license_id, draft.expires_at, draft.kid) == (
        order.id, *terms, shop.license_keys.active.kid)


def _license_row(order: Order, course: Course, now: dt.datetime, draft: LicenseDraft) -> rows.Statement:
    return rows.prepare_insert(License, {"license_id": draft.license_id, "order": order.id, "course": course.id,
                                         "buyer": order.buyer_id, "key": draft.text, "kid": draft.kid,
                                         "plan": course.plan, "issued_at": now, "expires_at": draft.expires_at})


def _flag_reused_transaction(p: Payment) -> str:
    with write_transaction():
        order = Order.get_or_none(Order.out_trade_no == p.tx["out_trade_no"])
        reason = f"transaction_id {p.tx['transaction_id']} already belongs to another order"
        if order is not None:
            _flag(order, "TRANSACTION_REUSED", reason)
        audit.record("payment.transaction_reused", at=p.now, actor="wechat", order=order, ip=p.ip,
                     detail={"source": p.source, "transaction_id": p.tx["transaction_id"]})
        p.keep("mismatch", order, reason)
    log.error("ALERT: %s", reason)
    return "mismatch"


def sync_with_wechat(shop: Shop, order: Order, *, source: str, attempts: int | None = None) -> str:
    """Ask WeChat Pay about one order and act on the answer through ``apply_transaction``."""
    tx = shop.wechat.query_by_out_trade_no(order.out_trade_no, attempts=attempts)
    return apply_transaction(shop, tx, source=source)
