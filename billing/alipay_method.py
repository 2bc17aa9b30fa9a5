"""Alipay as a second payment method, spoken to billing in the words billing already knows.

An Alipay order's ``out_trade_no`` starts with ``LA`` (WeChat's with ``LB``), so every call about
an order goes to the method that took it, however the caller found the order. Alipay's answers
are turned into the transaction and refund shapes billing judges, so there is one verdict rule
(``payments.judge_payment``), one path to a fulfilled order (``payments.apply_transaction``)
and one to a settled refund (``refunds.settle_refund``) for both methods.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from alipay.client import PAID_STATES, AlipayClient, Trade
from alipay.errors import AlipayError, ApiError as AlipayApiError, MalformedError, MismatchError, VerificationError
from alipay.keys import Keys
from alipay.notify import ACK, parse_form, verify_notification
from wechatpay.errors import ApiError, MalformedError as WeChatMalformed, TransportError

from database import write_transaction

from .shop import _OUT_TRADE_NO_ALPHABET

log = logging.getLogger(__name__)

WECHAT = "wechat"
ALIPAY = "alipay"
METHODS = (WECHAT, ALIPAY)
ALIPAY_PREFIX = "LA"
# Alipay's trade states in the words of WeChat's trade_state, which the verdict reads.
TRADE_STATES = {"WAIT_BUYER_PAY": "NOTPAY", "TRADE_SUCCESS": "SUCCESS", "TRADE_FINISHED": "SUCCESS",
                "TRADE_CLOSED": "CLOSED"}


def new_alipay_out_trade_no(now: dt.datetime) -> str:
    """An Alipay order's number: like WeChat's (28 characters, time first) but starting ``LA``."""
    suffix = "".join(secrets.choice(_OUT_TRADE_NO_ALPHABET) for _ in range(12))
    return ALIPAY_PREFIX + now.astimezone(dt.timezone.utc).strftime("%Y%m%d%H%M%S") + suffix


def offered_methods(shop: Any) -> tuple[str, ...]:
    """The methods a learner may choose in this shop: WeChat Pay unless switched off, Alipay when set up and on."""
    wechat_on = getattr(getattr(shop, "config", None), "wechat_enabled", True)
    return (((WECHAT,) if wechat_on else ())
            + ((ALIPAY,) if getattr(shop, "alipay", None) is not None else ()))


def checked_method(shop: Any, method: Any) -> str:
    """The method an order request names (WeChat, or the one on, when it names none), refused if unknown or off."""
    from .errors import BillingError

    if method is None:
        offered = offered_methods(shop)
        if not offered:
            raise BillingError("payment_method_unavailable", "every payment method is off")
        return offered[0]
    if method not in METHODS:
        raise BillingError("bad_request", "method must be wechat or alipay")
    if method not in offered_methods(shop):
        raise BillingError("payment_method_unavailable", f"this shop does not take {method}")
    return str(method)


def method_of(out_trade_no: str) -> str:
    """Which method an order number belongs to."""
    return ALIPAY if out_trade_no.startswith(ALIPAY_PREFIX) else WECHAT


def merchant_ids(app_id: str, seller_id: str) -> tuple[str, str]:
    """The (mchid, appid) pair an Alipay transaction carries for the verdict's "is it ours" check."""
    return f"alipay:{seller_id}", f"alipay:{app_id}"


@dataclass
class AlipaySetup:
    """The shop's Alipay app: its client, the keys that check Alipay, and who the money must go to."""

    client: AlipayClient
    keys: Keys
    app_id: str
    seller_id: str

    @property
    def ids(self) -> tuple[str, str]:
        return merchant_ids(self.app_id, self.seller_id)


def _as_wechat_error(call: str, exc: AlipayError) -> Exception:
    """Alipay's failure as the WeChat error billing already handles (retry, shop setup, rejected)."""
    if isinstance(exc, AlipayApiError):
        status = exc.status if exc.status != 200 else (503 if exc.retryable else 400)
        return ApiError(status, exc.sub_code or exc.code, f"Alipay {call}: {exc.sub_msg or exc.msg}"[:300],
                        retryable=exc.retryable, kind=exc.kind)
    if exc.retryable:
        return TransportError(f"Alipay {call}: {exc}")
    return WeChatMalformed(f"alipay_{type(exc).__name__}")


def transaction_from_trade(setup: AlipaySetup, out_trade_no: str, trade: Trade | None) -> dict[str, Any]:
    """alipay.trade.query's answer as a transaction (a signed answer to our own app: its ids are ours)."""
    mchid, appid = setup.ids
    tx: dict[str, Any] = {"mchid": mchid, "appid": appid, "out_trade_no": out_trade_no, "method": ALIPAY}
    if trade is None:  # Alipay has no trade until the QR is scanned
        tx["trade_state"] = "NOTPAY"
        return tx
    tx["trade_state"] = TRADE_STATES.get(trade.trade_status, trade.trade_status)
    tx["transaction_id"] = trade.trade_no
    tx["amount"] = {"total": trade.total_fen, "currency": "CNY"}
    tx["bank_type"] = "ALIPAY"
    tx["payer"] = {"openid": trade.buyer_logon_id[:128]} if trade.buyer_logon_id else None
    if trade.paid_at is not None:
        tx["success_time"] = trade.paid_at.isoformat()
    return tx


class AlipayAsWeChat:
    """The calls billing makes of a payment client, answered by Alipay."""

    def __init__(self, setup: AlipaySetup) -> None:
        self.setup = setup
        self.client = setup.client

    def create_native_order(self, *, out_trade_no: str, description: str, amount_fen: int,
                            notify_url: str, time_expire: dt.datetime, attach: str | None = None) -> str:
        try:
            return self.client.precreate(out_trade_no, amount_fen, description, expires_at=time_expire).qr_code
        except AlipayError as exc:
            raise _as_wechat_error("precreate", exc) from exc

    def query_by_out_trade_no(self, out_trade_no: str, *, attempts: int | None = None) -> dict[str, Any]:
        try:
            trade = self.client.query(out_trade_no)
        except AlipayError as exc:
            raise _as_wechat_error("query", exc) from exc
        return transaction_from_trade(self.setup, out_trade_no, trade)

    def close_order(self, out_trade_no: str) -> None:
        # False from close: never scanned, so Alipay has no trade to close; the QR dies at its time_expire,
        # and a payment made before then arrives as a late payment, flagged like WeChat's.
        try:
            self.client.close(out_trade_no)
            return
        except AlipayApiError as exc:
            if not (exc.signed and exc.sub_code == "ACQ.TRADE_STATUS_ERROR"):
                raise _as_wechat_error("close", exc) from exc
        except AlipayError as exc:
            raise _as_wechat_error("close", exc) from exc
        # Not waiting any more: closed already (time_expire passed) is what we wanted; paid is not.
        tx = self.query_by_out_trade_no(out_trade_no)
        if tx["trade_state"] != "CLOSED":
            raise ApiError(400, "ORDERPAID", "Alipay close: the trade is paid", kind="rejected")

    def create_refund(self, *, out_refund_no: str, out_trade_no: str, refund_fen: int, total_fen: int,
                      reason: str | None, notify_url: str) -> dict[str, Any]:
        try:
            done = self.client.refund(out_trade_no, refund_fen, out_refund_no, reason or "")
            if done.fund_change:
                status = "SUCCESS"
            else:  # a repeat of this out_request_no, or not confirmed yet: ask about this very refund
                state = self.client.refund_query(out_trade_no, out_refund_no)
                status = "SUCCESS" if state is not None and state.succeeded else "PROCESSING"
        except AlipayError as exc:
            raise _as_wechat_error("refund", exc) from exc
        return {"out_refund_no": out_refund_no, "out_trade_no": out_trade_no, "refund_id": out_refund_no,
                "transaction_id": done.trade_no, "status": status,
                "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"}}

    def query_refund_of(self, out_trade_no: str, out_refund_no: str) -> dict[str, Any]:
        try:
            state = self.client.refund_query(out_trade_no, out_refund_no)
        except AlipayError as exc:
            raise _as_wechat_error("refund query", exc) from exc
        if state is None:
            raise ApiError(404, "RESOURCE_NOT_EXISTS", "Alipay knows no such refund", kind="rejected")
        return {"out_refund_no": out_refund_no, "out_trade_no": out_trade_no, "refund_id": out_refund_no,
                "status": "SUCCESS" if state.succeeded else "PROCESSING",
                "amount": {"refund": state.refund_fen, "total": state.total_fen, "currency": "CNY"}}


class PaymentRouter:
    """One client for billing: each call goes to the method its order number belongs to."""

    def __init__(self, wechat: Any, alipay: AlipayAsWeChat | None) -> None:
        self.wechat = wechat
        self.alipay = alipay

    def __getattr__(self, name: str) -> Any:  # bills, clock skew, serial status: WeChat's own
        return getattr(self.wechat, name)

    def _for(self, out_trade_no: str) -> Any:
        if method_of(out_trade_no) == ALIPAY:
            if self.alipay is None:
                raise ApiError(400, "METHOD_OFF", "Alipay is not configured in this shop", kind="config")
            return self.alipay
        return self.wechat

    def create_native_order(self, *, out_trade_no: str, **kw: Any) -> str:
        return self._for(out_trade_no).create_native_order(out_trade_no=out_trade_no, **kw)  # type: ignore[no-any-return]

    def query_by_out_trade_no(self, out_trade_no: str, *, attempts: int | None = None) -> dict[str, Any]:
        return self._for(out_trade_no).query_by_out_trade_no(out_trade_no, attempts=attempts)  # type: ignore[no-any-return]

    def close_order(self, out_trade_no: str) -> None:
        self._for(out_trade_no).close_order(out_trade_no)

    def create_refund(self, *, out_trade_no: str, **kw: Any) -> dict[str, Any]:
        return self._for(out_trade_no).create_refund(out_trade_no=out_trade_no, **kw)  # type: ignore[no-any-return]

    def query_refund(self, out_refund_no: str, *, out_trade_no: str | None = None) -> dict[str, Any]:
        """A refund's state from the method its order went through (the order's number named, or found by ours)."""
        out_trade_no = out_trade_no or _order_of_refund(out_refund_no)
        if method_of(out_trade_no) == ALIPAY and self.alipay is not None:
            return self.alipay.query_refund_of(out_trade_no, out_refund_no)
        return self.wechat.query_refund(out_refund_no)  # type: ignore[no-any-return]

    def service_for(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Which service a call goes to (for the metrics): the method of the order it is about."""
        number = kwargs.get("out_trade_no") or (args[0] if args and isinstance(args[0], str) else "")
        if name == "query_refund" and not kwargs.get("out_trade_no"):
            number = _order_of_refund(str(kwargs.get("out_refund_no") or number))
        return ALIPAY if isinstance(number, str) and method_of(number) == ALIPAY and self.alipay is not None else WECHAT


def _order_of_refund(out_refund_no: str) -> str:
    """The out_trade_no of the order a refund belongs to ("" when we hold no such refund)."""
    from models import Order, Refund  # the refund's order says which method it went through

    found = (Order.select(Order.out_trade_no).join(Refund, on=(Refund.order == Order.id))
             .where(Refund.out_refund_no == out_refund_no).first())
    return str(found.out_trade_no) if found is not None else ""


# --- the notification --------------------------------------------------------------------------

class AlipayNotificationRefused(Exception):
    """A notification that is not believed: ``reason`` says why (answered 400, Alipay sends again)."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AlipayNotificationDeferred(AlipayNotificationRefused):
    """Believed, but not acted on yet (Alipay could not be asked what it needs): 503, Alipay sends again."""

    status = 503


def receive_alipay_notification(shop: Any, body: bytes, ip: str | None) -> str:
    """Verify Alipay's notification and apply it through the one payment path; return ``success``.

    A forged or tampered notification is refused before anything is read; one for another app
    or seller, or at another amount, goes to the verdict as what it is (flagged, never fulfilled).
    """
    from . import audit
    from .payments import apply_transaction

    setup: AlipaySetup | None = getattr(shop, "alipay", None)
    if setup is None:
        raise AlipayNotificationRefused("alipay_off")
    try:
        fields = parse_form(body)
        try:
            note = verify_notification(fields, setup.keys, app_id=setup.app_id, seller_id=setup.seller_id)
        except MismatchError as exc:
            if exc.field not in ("app_id", "seller_id"):
                raise
            note = None
    except (VerificationError, MalformedError, MismatchError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "field", "refused")
        with write_transaction():
            audit.record("alipay.notification_refused", at=shop.now(), actor="alipay", ip=ip,
                         detail={"reason": str(reason)[:40]})
        raise AlipayNotificationRefused(str(reason)) from exc
    if note is not None and is_refund_notification(note.fields):
        result = _refund_notification(shop, setup, note, ip)
        log.info("alipay refund notification for %s: %s", note.out_trade_no, result)
        return ACK
    if note is None:  # authentic, but about another app or seller: the verdict flags it
        mchid, appid = merchant_ids(fields.get("app_id", ""), fields.get("seller_id", ""))
        tx: dict[str, Any] = {"mchid": mchid, "appid": appid, "out_trade_no": fields.get("out_trade_no", ""),
                              "method": ALIPAY, "trade_state": "NOTPAY"}
    else:
        mchid, appid = setup.ids
        tx = {"mchid": mchid, "appid": appid, "out_trade_no": note.out_trade_no, "method": ALIPAY,
              "trade_state": "SUCCESS" if note.trade_status in PAID_STATES else TRADE_STATES[note.trade_status],
              "transaction_id": note.trade_no, "amount": {"total": note.total_fen, "currency": "CNY"},
              "bank_type": "ALIPAY"}
        if note.paid_at is not None:
            tx["success_time"] = note.paid_at.isoformat()
    result = apply_transaction(shop, tx, source="alipay_notify", ip=ip)
    log.info("alipay notification for %s: %s", tx["out_trade_no"], result)
    return ACK


# --- refunds told by notification ----------------------------------------------------------------

def is_refund_notification(fields: Any) -> bool:
    """A trade notification caused by a refund: only those carry refund_fee and gmt_refund."""
    return bool(fields.get("refund_fee") or fields.get("gmt_refund"))


def _refund_notification(shop: Any, setup: AlipaySetup, note: Any, ip: str | None) -> str:
    """Settle the refund a verified notification tells of, by the rule WeChat's refunds follow.

    Alipay's refund_fee is the trade's total refunded so far, not this refund's amount. Our own refund
    (out_biz_no is the out_request_no we sent) keeps its amount, if the total can hold it. A refund
    made in Alipay's merchant centre is asked about (alipay.trade.fastpay.refund.query) for its own
    amount; one Alipay does not confirm is left to the creator, never guessed.
    """
    from models import Order, Refund

    from . import audit
    from .refunds import settle_refund

    out_refund_no = (note.fields.get("out_biz_no") or note.out_trade_no)[:64]
    order = Order.get_or_none(Order.out_trade_no == note.out_trade_no)
    if order is None or method_of(order.out_trade_no) != ALIPAY:
        with write_transaction():
            audit.record("refund.unknown", at=shop.now(), actor="alipay", ip=ip,
                         detail={"source": "alipay_notification", "out_refund_no": out_refund_no,
                                 "out_trade_no": note.out_trade_no[:64]})
        return "unknown"
    known = Refund.get_or_none((Refund.out_refund_no == out_refund_no) & (Refund.order == order.id))
    amount: int | None
    if note.refund_fen > note.total_fen:
        amount = None
    elif known is not None:
        amount = known.amount_fen if known.amount_fen <= note.refund_fen else None
    else:
        amount = _confirmed_amount(shop, setup, note, out_refund_no, order, ip)
    said = {"out_refund_no": out_refund_no, "out_trade_no": note.out_trade_no, "transaction_id": note.trade_no,
            "refund_id": out_refund_no[:32], "status": "SUCCESS",
            "amount": {"refund": amount, "total": note.total_fen, "currency": "CNY"}}
    if isinstance(note.fields.get("gmt_refund"), str) and amount is not None:
        moment = _refund_time(note.fields["gmt_refund"])
        if moment is not None:
            said["success_time"] = moment
    return settle_refund(shop, said, source="alipay_notification", ip=ip, actor="alipay")


def _confirmed_amount(shop: Any, setup: AlipaySetup, note: Any, out_refund_no: str, order: Any,
                      ip: str | None) -> int | None:
    """What Alipay's own refund query says this refund was (None: it knows no such refund, or not for this trade)."""
    from . import audit

    try:
        state = setup.client.refund_query(note.out_trade_no, out_refund_no)
    except AlipayError as exc:
        with write_transaction():
            audit.record("alipay.call_failed", at=shop.now(), actor="alipay", order=order, ip=ip,
                         detail={"call": "refund_query", "out_refund_no": out_refund_no,
                                 "error": type(exc).__name__})
        raise AlipayNotificationDeferred("alipay_unavailable") from exc
    if state is None or not state.succeeded or state.total_fen != note.total_fen or state.refund_fen > note.refund_fen:
        return None
    return state.refund_fen


def _refund_time(text: str) -> str | None:
    """gmt_refund (Beijing, with or without milliseconds) as an ISO time with its offset."""
    from alipay.client import parse_beijing_time

    try:
        moment = parse_beijing_time(text.split(".", 1)[0])
    except (MalformedError, ValueError):
        return None
    return moment.isoformat() if moment is not None else None
