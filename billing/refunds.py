"""Refunds through WeChat Pay: asked for once, settled by one function whether a notification or a query tells."""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from peewee import fn

from models import Order, Refund
from wechatpay.errors import ApiError, FieldError, WeChatPayError
from wechatpay.fields import REFUND_REASON_BYTES, check_utf8

from . import audit
from .errors import BillingError, paid_with_alipay, wechat_unavailable
from .payments import (NotificationRefused, NotifyAnswer, Received, keep_notification, open_notification,
                       record_refunded_payment)
from .shop import Shop, is_pack
from database import write_transaction

log = logging.getLogger(__name__)

OUT_REFUND_NO = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# ABNORMAL is not final: the merchant resolves it (apply-abnormal-refund, or 商户平台), then PROCESSING → SUCCESS.
FINAL = ("SUCCESS", "CLOSED", "FAILED")
UNSETTLED = ("PROCESSING", "ABNORMAL")
# How often the job asks about a refund: briskly while processing, less while it waits on the merchant.
REQUERY_PROCESSING = dt.timedelta(minutes=1)
REQUERY_ABNORMAL = dt.timedelta(minutes=10)
ABNORMAL_TYPES = ("USER_BANK_CARD", "MERCHANT_BANK_CARD")
ADOPTED_REASON = "made outside this shop (商户平台)"
ADOPTED_REASONS = {"alipay": "made outside this shop (支付宝商家中心)"}
# Refunds that hold part of the order's money: only a closed or refused one gives it back.
HOLDING = ("PROCESSING", "SUCCESS", "ABNORMAL")
REFUNDABLE = ("fulfilled", "paid", "partially_refunded")
REFUND_EVENTS = {"REFUND.SUCCESS": "SUCCESS", "REFUND.CLOSED": "CLOSED", "REFUND.ABNORMAL": "ABNORMAL"}
STUCK_AFTER = dt.timedelta(minutes=30)


def refund_notify_url(shop: Shop) -> str:
    """Where WeChat Pay tells us about refunds: beside the payment notify URL."""
    return shop.notify_url.rsplit("/", 1)[0] + "/refund"


def new_out_refund_no(now: dt.datetime) -> str:
    """Return a fresh refund number: ``RF``, the UTC time, and random letters and digits."""
    return "RF" + now.astimezone(dt.timezone.utc).strftime("%Y%m%d%H%M%S") + secrets.token_hex(6).upper()


def refunded_fen(order: Order, statuses: tuple[str, ...] = ("SUCCESS",)) -> int:
    """Sum the order's refunds in the given states."""
    total = (Refund.select(fn.COALESCE(fn.SUM(Refund.amount_fen), 0))
             .where((Refund.order == order.id) & (Refund.status.in_(statuses))).scalar())
    return int(total or 0)


def refundable_fen(order: Order) -> int:
    """What is left to refund: the amount paid less every refund not closed or refused."""
    if order.transaction_id is None:
        return 0
    return max(0, order.amount_fen - refunded_fen(order, HOLDING))


def request_refund(shop: Shop, order: Order, *, amount_fen: int, reason: str, revoke_license: bool,
                   actor: str, ip: str | None = None,
                   hold: Callable[[Order, Refund], None] | None = None) -> Refund:
    """Record a refund and ask WeChat Pay for it; the row keeps its out_refund_no for every retry.

    ``hold`` runs in the refund's own transaction (a refund of classroom seats marks its seats there).
    """
    reason = reason.strip()
    if not reason:
        raise BillingError("reason_required")
    try:
        # WeChat counts the reason's 80 in UTF-8 bytes (26 Chinese characters) and refuses emoji.
        check_utf8("reason", reason, REFUND_REASON_BYTES)
    except FieldError as exc:
        raise BillingError("bad_request", _reason_problem(exc),
                           extra={"field": exc.field, "rule": exc.problem, "limit_bytes": exc.limit}) from None
    if type(amount_fen) is not int or amount_fen < 1:
        raise BillingError("bad_request", "the amount must be at least 0.01 yuan")
    now = shop.now()
    with write_transaction():
        order = Order.get_by_id(order.id)
        # A flagged order with a payment (late, or held past an underpayment) is refundable too.
        if order.transaction_id is None or (order.status not in REFUNDABLE and order.flag is None):
            raise BillingError("refund_not_allowed", f"order is {order.status}")
        left = refundable_fen(order)
        if amount_fen > left:
            raise BillingError("refund_too_large", f"最多还能退 ¥{left // 100}.{left % 100:02d} · "
                                                  f"at most ¥{left // 100}.{left % 100:02d} is left to refund")
        full = amount_fen + refunded_fen(order, HOLDING) >= order.amount_fen
        if hold is None:
            from .seats import check_plain_refund

            check_plain_refund(order, full)
        refund = Refund.create(order=order, out_refund_no=new_out_refund_no(now), amount_fen=amount_fen,
                               reason=reason, revoke_license=revoke_license or full, actor=actor,
                               created_at=now, updated_at=now)
        audit.record("refund.requested", at=now, actor=actor, order=order, ip=ip,
                     detail={"out_refund_no": refund.out_refund_no, "amount_fen": amount_fen,
                             "reason": reason, "revoke_license": refund.revoke_license})
        if hold is not None:
            hold(order, refund)
    return submit_refund(shop, refund)


def _reason_problem(exc: FieldError) -> str:
    if exc.problem == "too_long":
        return (f"the reason is {exc.length} bytes in UTF-8; WeChat Pay takes at most {exc.limit} "
                f"(a Chinese character is 3 bytes) / 原因最多 {exc.limit} 字节（一个汉字占 3 字节）")
    return (f"the reason contains {exc.character!r}, a character WeChat Pay does not accept (emoji and other "
            "characters beyond U+FFFF) / 原因中含有微信支付不接受的字符（如表情符号）")


def submit_refund(shop: Shop, refund: Refund) -> Refund:
    """Send (or re-send, with the same out_refund_no) one refund request to WeChat Pay."""
    order = refund.order
    try:
        answer = shop.wechat.create_refund(
            out_refund_no=refund.out_refund_no, out_trade_no=order.out_trade_no,
            refund_fen=refund.amount_fen, total_fen=order.amount_fen, reason=refund.reason,
            notify_url=refund_notify_url(shop))
    except ApiError as exc:
        # NOT_ENOUGH: the merchant's balance is short for now; the job tries again later.
        if exc.retryable or exc.code in ("NOT_ENOUGH", "SYSTEM_ERROR", "FREQUENCY_LIMITED"):
            _note_retry(shop, refund, f"{exc.code or exc.status}")
        else:
            _fail(shop, refund, f"{exc.code}: {exc.message}"[:200])
        return Refund.get_by_id(refund.id)
    except WeChatPayError as exc:
        _note_retry(shop, refund, type(exc).__name__)
        return Refund.get_by_id(refund.id)
    settle_refund(shop, answer, source="create")
    return Refund.get_by_id(refund.id)


def _fail(shop: Shop, refund: Refund, why: str) -> None:
    now = shop.now()
    with write_transaction():
        changed = Refund.update(status="FAILED", detail=why, updated_at=now, settled_at=now).where(
            (Refund.id == refund.id) & (Refund.status == "PROCESSING")).execute()
        if changed:
            audit.record("refund.refused", at=now, actor=_method(refund), order=refund.order,
                         detail={"out_refund_no": refund.out_refund_no, "why": why})
    log.warning("refund %s refused by %s: %s", refund.out_refund_no, _method(refund), why)


def _method(refund: Refund) -> str:
    """The payment method (wechat or alipay) the refund's order was paid with: who is asked, who answers."""
    return "alipay" if paid_with_alipay(refund.order.out_trade_no) else "wechat"


def _note_retry(shop: Shop, refund: Refund, why: str) -> None:
    now = shop.now()
    with write_transaction():
        Refund.update(detail=f"will retry: {why}"[:200], updated_at=now).where(Refund.id == refund.id).execute()
        audit.record(f"{_method(refund)}.call_failed", at=now, order=refund.order,
                     detail={"call": "create_refund", "out_refund_no": refund.out_refund_no, "error": why})


@dataclass(frozen=True)
class RefundVerdict:
    """What WeChat's word about a refund means for our refund row."""

    outcome: str  # unknown | mismatch | processing | resumed | duplicate | ignored | success | abnormal | ended


def judge_refund(wechat_refund: Mapping[str, Any], status: str, refund: Refund | None, order: Order | None,
                 mchid: str) -> RefundVerdict:
    """Decide what a refund status means for the refund it names; reads, never writes."""
    if refund is None or order is None:
        return RefundVerdict("unknown")
    amount = wechat_refund.get("amount")
    if (wechat_refund.get("out_trade_no") != order.out_trade_no
            or not isinstance(amount, dict) or amount.get("refund") != refund.amount_fen
            or wechat_refund.get("mchid", mchid) != mchid):
        return RefundVerdict("mismatch")
    if status == "PROCESSING":
        # An abnormal refund the merchant resolved is processing again.
        return RefundVerdict("resumed" if refund.status == "ABNORMAL" else "processing")
    if refund.status == status:
        return RefundVerdict("duplicate")
    if status not in ("SUCCESS", "CLOSED", "ABNORMAL"):
        return RefundVerdict("ignored")
    # ABNORMAL may still end in SUCCESS (the creator resolves it by API or at the merchant platform).
    if refund.status not in UNSETTLED:
        return RefundVerdict("duplicate")
    return RefundVerdict({"SUCCESS": "success", "ABNORMAL": "abnormal"}.get(status, "ended"))


@dataclass
class RefundNews:
    """One report about a refund being settled: what WeChat said, where it came from, and when."""

    shop: Shop
    said: Mapping[str, Any]
    status: str
    out_refund_no: str
    source: str
    now: dt.datetime
    received: Received | None = None
    ip: str | None = None
    actor: str = "wechat"  # who told us: the payment method that made the refund

    def keep(self, result: str, order: Order | None) -> None:
        """Store the notification (if one brought this) with what came of it."""
        if self.received is not None:
            keep_notification(self.received, result, order=order,
                              reason="" if order is not None else f"unknown refund {self.out_refund_no[:60]}")

    def facts(self, refund: Refund) -> dict[str, Any]:
        """What the audit event of a settled refund says."""
        return {"source": self.source, "out_refund_no": refund.out_refund_no,
                "refund_id": self.said.get("refund_id"), "amount_fen": refund.amount_fen}


def settle_refund(shop: Shop, wechat_refund: Mapping[str, Any], *, source: str,
                  received: Received | None = None, ip: str | None = None, actor: str = "wechat") -> str:
    """Act on WeChat's (or Alipay's) word about one refund; the single path that moves money state after a refund.

    Returns ``processing``, ``success``, ``closed``, ``abnormal``, ``duplicate``, ``unknown`` or ``mismatch``.
    """
    status = wechat_refund.get("status") or wechat_refund.get("refund_status")
    out_refund_no = wechat_refund.get("out_refund_no")
    if not isinstance(status, str) or not isinstance(out_refund_no, str):
        return "mismatch"
    news = RefundNews(shop=shop, said=wechat_refund, status=status, out_refund_no=out_refund_no[:64],
                      source=source, now=shop.now(), received=received, ip=ip, actor=actor)
    with write_transaction():
        refund = Refund.get_or_none(Refund.out_refund_no == news.out_refund_no)
        if refund is None:  # made elsewhere (商户平台): adopted when it is one of our orders and fits
            refund, flagged = _adopt(news)
            if flagged:
                return "mismatch"  # the order is flagged for the creator
        order = Order.get_by_id(refund.order_id) if refund is not None else None
        verdict = judge_refund(wechat_refund, status, refund, order, shop.mchid)
        if refund is not None and verdict.outcome not in ("unknown", "mismatch"):
            refund_id = wechat_refund.get("refund_id")
            if isinstance(refund_id, str) and refund.refund_id is None:
                Refund.update(refund_id=refund_id[:32], updated_at=news.now).where(Refund.id == refund.id).execute()
        result = REFUND_OUTCOMES[verdict.outcome](news, refund, order)
    if result == "success":
        log.info("refund %s succeeded", news.out_refund_no)
    return result


def _adopt(news: RefundNews) -> tuple[Refund | None, bool]:
    """Record a refund of one of our orders made outside this shop, if it fits the order; else flag the order.

    A refund the creator makes by hand in 商户平台 (how complaints are usually settled) carries an
    out_refund_no we never issued. It is adopted as a refund row, so the one settling path
    below moves the order and withdraws the license by the same rule as ours; one that does not
    fit (another amount, more than is left) flags the order for the creator, with an alert.
    Returns the new row (None when the order is not ours) and whether the order was flagged instead.
    """
    said = news.said
    out_trade_no, amount = said.get("out_trade_no"), said.get("amount")
    order = Order.get_or_none(Order.out_trade_no == out_trade_no) if isinstance(out_trade_no, str) else None
    if order is None or said.get("mchid", news.shop.mchid) != news.shop.mchid:
        return None, False
    amounts: Mapping[str, Any] = amount if isinstance(amount, dict) else {}
    refund_fen = amounts.get("refund")
    if order.transaction_id is None:
        # A refund of a payment we never heard of (its notification lost): the refund proves it was paid.
        paid_by = said.get("transaction_id")
        if not isinstance(paid_by, str) or not 1 <= len(paid_by) <= 32 or amounts.get("total") != order.amount_fen:
            _flag_unmatched(news, order, "a refund of a payment this shop never recorded, not matching the order")
            return None, True
        record_refunded_payment(order, paid={"transaction_id": paid_by}, source="refund_" + news.source,
                                why=f"paid {order.amount_fen} fen ({paid_by}) and refunded at {'Alipay' if news.actor == 'alipay' else 'WeChat'}", at=news.now,
                                ip=news.ip)
        order = Order.get_by_id(order.id)
    problem = None
    if said.get("transaction_id") not in (None, order.transaction_id):
        problem = f"transaction_id {str(said.get('transaction_id'))[:32]} is not the order's"
    elif type(refund_fen) is not int or refund_fen < 1 or amounts.get("total", order.amount_fen) != order.amount_fen:
        problem = "the refund's amount does not fit the order"
    elif news.status != "CLOSED" and refund_fen > refundable_fen(order):
        problem = f"{refund_fen} fen is more than the {refundable_fen(order)} fen left to refund"
    if problem is not None:
        _flag_unmatched(news, order, problem)
        return None, True
    assert isinstance(refund_fen, int)
    full = news.status != "CLOSED" and refund_fen + refunded_fen(order, HOLDING) >= order.amount_fen
    refund_id = said.get("refund_id")
    refund = Refund.create(order=order, out_refund_no=news.out_refund_no, amount_fen=refund_fen,
                           reason=ADOPTED_REASONS.get(news.actor, ADOPTED_REASON), revoke_license=full, actor=news.actor,
                           refund_id=refund_id[:32] if isinstance(refund_id, str) else None,
                           created_at=news.now, updated_at=news.now)
    audit.record("refund.adopted", at=news.now, actor=news.actor, order=order, ip=news.ip,
                 detail={"source": news.source, "out_refund_no": news.out_refund_no, "amount_fen": refund_fen,
                         "status": news.status})
    log.warning("refund %s of order %s was made outside this shop; adopted", news.out_refund_no, order.public_id)
    return refund, False


def _flag_unmatched(news: RefundNews, order: Order, problem: str) -> None:
    reason = f"refund {news.out_refund_no} made outside this shop: {problem}"[:300]
    if order.flag is None:  # the alerts job tells the creator of every flagged order
        Order.update(flag="REFUND_UNMATCHED", flag_detail=reason).where(Order.id == order.id).execute()
    audit.record("refund.unmatched", at=news.now, actor=news.actor, order=order, ip=news.ip,
                 detail={"source": news.source, "out_refund_no": news.out_refund_no, "problem": problem[:200]})
    news.keep("mismatch", order)
    log.error("ALERT: order %s %s", order.public_id, reason)


def _unknown_refund(news: RefundNews, refund: Refund | None, order: Order | None) -> str:
    audit.record("refund.unknown", at=news.now, actor=news.actor, ip=news.ip,
                 detail={"source": news.source, "out_refund_no": news.out_refund_no})
    news.keep("unknown_order", None)
    return "unknown"


def _mismatched_refund(news: RefundNews, refund: Refund, order: Order) -> str:
    audit.record("refund.mismatch", at=news.now, actor=news.actor, order=order, ip=news.ip,
                 detail={"source": news.source, "out_refund_no": refund.out_refund_no})
    news.keep("mismatch", order)
    log.error("ALERT: refund %s does not match what we asked for", refund.out_refund_no)
    return "mismatch"


def _refund_processing(news: RefundNews, refund: Refund, order: Order) -> str:
    news.keep("processing", order)
    return "processing"


def _refund_duplicate(news: RefundNews, refund: Refund, order: Order) -> str:
    news.keep("duplicate", order)
    return "duplicate"


def _refund_ignored(news: RefundNews, refund: Refund, order: Order) -> str:
    news.keep("ignored", order)
    return "mismatch"


def _settle(news: RefundNews, refund: Refund) -> bool:
    success_time = news.said.get("success_time") if news.status == "SUCCESS" else None
    return bool(Refund.update(status=news.status, updated_at=news.now, settled_at=news.now, detail=None,
                              success_time=success_time[:32] if isinstance(success_time, str) else None).where(
        (Refund.id == refund.id) & (Refund.status.in_(UNSETTLED))).execute())


def _refund_abnormal(news: RefundNews, refund: Refund, order: Order) -> str:
    """ABNORMAL (the user's card frozen or closed): not final; the creator resolves it, the job keeps asking."""
    if not Refund.update(status="ABNORMAL", updated_at=news.now,
                         detail="退款异常: apply the refund to a bank card (console) or in 商户平台").where(
            (Refund.id == refund.id) & (Refund.status == "PROCESSING")).execute():
        return _refund_duplicate(news, refund, order)
    audit.record("refund.abnormal", at=news.now, actor=news.actor, order=order, ip=news.ip, detail=news.facts(refund))
    log.error("ALERT: refund %s is ABNORMAL at WeChat; it needs the creator (apply-abnormal-refund)",
              refund.out_refund_no)
    news.keep("abnormal", order)
    return "abnormal"


def _refund_resumed(news: RefundNews, refund: Refund, order: Order) -> str:
    """An abnormal refund the merchant resolved: processing again, until WeChat says SUCCESS."""
    if Refund.update(status="PROCESSING", updated_at=news.now, detail=None).where(
            (Refund.id == refund.id) & (Refund.status == "ABNORMAL")).execute():
        audit.record("refund.resumed", at=news.now, actor=news.actor, order=order, ip=news.ip,
                     detail=news.facts(refund))
    news.keep("processing", order)
    return "processing"


def _refund_ended(news: RefundNews, refund: Refund, order: Order) -> str:
    """CLOSED: the money did not go back; the order is unchanged and the creator is told."""
    if not _settle(news, refund):
        return _refund_duplicate(news, refund, order)
    outcome = news.status.lower()
    audit.record("refund." + outcome, at=news.now, actor=news.actor, order=order, ip=news.ip, detail=news.facts(refund))
    log.error("ALERT: refund %s ended %s; the order is unchanged", refund.out_refund_no, news.status)
    news.keep(outcome, order)
    return outcome


def _refund_succeeded(news: RefundNews, refund: Refund, order: Order) -> str:
    """The money went back: the order is (partly) refunded and what the refund paid for is taken back."""
    if not _settle(news, refund):
        return _refund_duplicate(news, refund, order)
    done = refunded_fen(order)
    new_status = "refunded" if done >= order.amount_fen else "partially_refunded"
    Order.update(status=new_status).where(Order.id == order.id).execute()
    audit.record("refund.succeeded", at=news.now, actor=news.actor, order=order, ip=news.ip,
                 detail={**news.facts(refund), "before": order.status, "after": new_status, "refunded_fen": done})
    if refund.revoke_license or new_status == "refunded":
        from .licenses import withdraw_period

        withdraw_period(news.shop, order, reason="refunded", actor="system", at=news.now)
    if is_pack(order.out_trade_no):
        from .seats import withdraw_refunded_seats

        withdraw_refunded_seats(order, refund, new_status == "refunded", news.now)
    news.keep("success", order)
    return "success"


REFUND_OUTCOMES: dict[str, Callable[[RefundNews, Any, Any], str]] = {
    "unknown": _unknown_refund, "mismatch": _mismatched_refund, "processing": _refund_processing,
    "duplicate": _refund_duplicate, "ignored": _refund_ignored, "success": _refund_succeeded,
    "ended": _refund_ended, "abnormal": _refund_abnormal, "resumed": _refund_resumed,
}


def receive_refund_notification(shop: Shop, body: bytes, headers: Mapping[str, str],
                                ip: str | None = None) -> NotifyAnswer:
    """Verify, keep and act on one refund notification, exactly as strictly as a payment one."""
    now = shop.now()
    try:
        received, note = open_notification(shop, "refund", body, headers, ip, now)
    except NotificationRefused as refused:
        return refused.answer
    expected = REFUND_EVENTS.get(note.event_type)
    resource = dict(note.resource)
    if expected is None or resource.get("refund_status") != expected:
        with write_transaction():
            keep_notification(received, "ignored", reason="not a refund outcome")
        return NotifyAnswer(204)
    settle_refund(shop, resource, source="notification", received=received, ip=ip)
    return NotifyAnswer(204)


def sync_refund(shop: Shop, refund: Refund) -> str:
    """Ask WeChat Pay about one refund and settle it by the answer."""
    answer = shop.wechat.query_refund(refund.out_refund_no)
    return settle_refund(shop, answer, source="query")


def check_refund(shop: Shop, refund: Refund) -> None:
    """The creator's "ask WeChat again": send a refund WeChat never took, else query and settle it."""
    if refund.refund_id is None and refund.status == "PROCESSING":
        submit_refund(shop, refund)
        return
    try:
        sync_refund(shop, refund)
    except WeChatPayError as exc:
        raise wechat_unavailable(exc, refund.order.out_trade_no) from exc


def reconcile_refunds(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Ask about every refund not final yet (PROCESSING each minute, ABNORMAL every 10); re-send ones WeChat never took."""
    summary: dict[str, Any] = {"checked": 0, "settled": 0, "resent": 0, "errors": 0}
    waiting = (Refund.select().where(
        ((Refund.status == "PROCESSING") & (Refund.updated_at < now - REQUERY_PROCESSING))
        | ((Refund.status == "ABNORMAL") & (Refund.updated_at < now - REQUERY_ABNORMAL)))
        .order_by(Refund.updated_at, Refund.id).limit(50))
    for refund in list(waiting):
        summary["checked"] += 1
        try:
            if refund.refund_id is None:
                submit_refund(shop, refund)
                summary["resent"] += 1
                continue
            if sync_refund(shop, refund) in ("success", "closed"):
                summary["settled"] += 1
            else:
                with write_transaction():
                    Refund.update(updated_at=shop.now()).where(Refund.id == refund.id).execute()
        except ApiError as exc:
            if exc.code == "RESOURCE_NOT_EXISTS":
                submit_refund(shop, refund)
                summary["resent"] += 1
            else:
                summary["errors"] += 1
        except WeChatPayError:
            summary["errors"] += 1
    return summary


def apply_abnormal_refund(shop: Shop, refund: Refund, *, kind: str, actor: str, ip: str | None = None,
                          bank_type: str | None = None, bank_account: str | None = None,
                          real_name: str | None = None) -> str:
    """Resolve an ABNORMAL refund at WeChat: to the user's bank card (its details encrypted) or the merchant's."""
    if kind not in ABNORMAL_TYPES:
        raise BillingError("bad_request", "type must be USER_BANK_CARD or MERCHANT_BANK_CARD")
    refund = Refund.get_by_id(refund.id)
    if refund.status != "ABNORMAL" or refund.refund_id is None:
        raise BillingError("refund_not_allowed", f"the refund is {refund.status}, not ABNORMAL")
    card = {"bank_type": bank_type, "bank_account": bank_account, "real_name": real_name}
    if kind == "USER_BANK_CARD" and not all(isinstance(v, str) and v.strip() for v in card.values()):
        raise BillingError("bad_request", "a refund to the user's bank card needs the bank, the card number and the name")
    try:
        answer = shop.wechat.apply_abnormal_refund(
            refund_id=refund.refund_id, out_refund_no=refund.out_refund_no, kind=kind,
            **({k: v.strip() for k, v in card.items() if v} if kind == "USER_BANK_CARD" else {}))
    except (WeChatPayError, ValueError) as exc:
        why = f"{exc.code}: {exc.message}" if isinstance(exc, ApiError) else str(exc) or type(exc).__name__
        with write_transaction():
            audit.record("wechat.call_failed", at=shop.now(), actor=actor, order=refund.order, ip=ip,
                         detail={"call": "apply_abnormal_refund", "out_refund_no": refund.out_refund_no,
                                 "type": kind, "error": why[:200]})
        if isinstance(exc, WeChatPayError) and (exc.retryable or not isinstance(exc, ApiError)):
            raise BillingError("wechat_unavailable", type(exc).__name__, retry_after=10) from None
        raise BillingError("refund_not_allowed", why[:200]) from None
    with write_transaction():
        # Only the kind is kept: the card number and the name are the learner's, never stored.
        audit.record("refund.abnormal_applied", at=shop.now(), actor=actor, order=refund.order, ip=ip,
                     detail={"out_refund_no": refund.out_refund_no, "type": kind})
    return settle_refund(shop, answer, source="apply", ip=ip)


def refunds_needing_attention(now: dt.datetime) -> list[Refund]:
    """Refunds that ended badly or have waited too long."""
    return list(Refund.select().where(
        Refund.status.in_(("CLOSED", "ABNORMAL", "FAILED"))
        | ((Refund.status == "PROCESSING") & (Refund.created_at < now - STUCK_AFTER))
    ).order_by(Refund.created_at.desc()).limit(50))


def refund_row(refund: Refund) -> dict[str, Any]:
    """What the console shows of one refund."""
    return {"out_refund_no": refund.out_refund_no, "amount_fen": refund.amount_fen, "status": refund.status,
            "reason": refund.reason, "refund_id": refund.refund_id, "detail": refund.detail,
            "created_at": refund.created_at, "settled_at": refund.settled_at,
            "revoke_license": refund.revoke_license, "actor": refund.actor}
