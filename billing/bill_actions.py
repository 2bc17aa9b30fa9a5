"""What settles a bill difference besides a note: the license the payment service's own answer proves is owed,
and a refund it made that this shop adopts. WeChat Pay's differences ask WeChat Pay, Alipay's ask Alipay, and
every word names the one asked.

Each action asks the payment service first and then goes through billing's one path for that news
(``apply_transaction`` for a payment, ``settle_refund`` for a refund), so a license issued here is the
license a notification would have issued. The difference is settled, with its audit event, only once
the ledger shows the outcome; every refusal says why in Chinese and English and leaves an audit event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from database import write_transaction
from models import BillDifference, License, Order, Refund
from wechatpay.errors import WeChatPayError

from . import audit
from .payments import UnusableTransaction, apply_transaction
from .refunds import settle_refund
from .shop import Shop, is_pack

# Which differences each action settles: WeChat Pay's kind and Alipay's.
ACTION_KINDS = {"issue_license": ("paid_not_licensed", "alipay_paid_not_licensed"),
                "adopt_refund": ("refund_missing_here", "alipay_refund_missing_here")}


@dataclass(frozen=True)
class Names:
    """The payment service a difference is about, in words: full and short, Chinese and English."""

    zh: str
    en: str
    zh_short: str
    en_short: str
    unavailable: str  # the catalogue's code for "it did not answer"
    not_paid: str  # and for "it says the order is not paid"
    merchant_site: str  # where the creator refunds a payment by hand
    merchant_site_en: str


WECHAT_NAMES = Names("微信支付", "WeChat Pay", "微信", "WeChat", "wechat_unavailable", "not_paid_at_wechat",
                     "商户平台", "the merchant platform (商户平台)")
ALIPAY_NAMES = Names("支付宝", "Alipay", "支付宝", "Alipay", "alipay_unavailable", "not_paid_at_alipay",
                     "支付宝商家中心", "Alipay's merchant centre (支付宝商家中心)")


def names_of(kind: str) -> Names:
    """Whose bill a difference came from: Alipay's kinds start ``alipay_``."""
    return ALIPAY_NAMES if kind.startswith("alipay_") else WECHAT_NAMES


class ActionRefused(Exception):
    """An action that cannot settle a difference: an HTTP status, a stable reason and words in zh and en."""

    def __init__(self, status: int, reason: str, zh: str, en: str) -> None:
        super().__init__(f"{reason}: {en}")
        self.status, self.reason, self.zh, self.en = status, reason, zh, en


@dataclass(frozen=True)
class Settled:
    """A difference an action settled: its id and what was done, in words."""

    difference_id: int
    zh: str
    en: str


def _refuse(shop: Shop, action: str, row: BillDifference | None, difference_id: int, refusal: ActionRefused, *,
            actor: str, ip: str | None) -> ActionRefused:
    """Record the refusal (who tried what, and why) and hand it back to raise."""
    order = Order.get_or_none(Order.out_trade_no == row.out_trade_no) if row is not None and row.out_trade_no else None
    with write_transaction():
        audit.record("bill_difference.refused", at=shop.now(), actor=actor, ip=ip, order=order,
                     detail={"difference": difference_id, "action": action, "reason": refusal.reason,
                             "note": refusal.en})
    return refusal


def _open_row(difference_id: int, action: str) -> BillDifference:
    row = BillDifference.get_or_none(BillDifference.id == difference_id)
    if row is None:
        raise ActionRefused(404, "not_found", "没有这条对账差异。", "There is no such bill difference.")
    if row.resolved_at is not None:
        raise ActionRefused(409, "already_settled", "这条差异已经处理过了。", "This difference is settled already.")
    if row.kind not in ACTION_KINDS[action]:
        raise ActionRefused(409, "wrong_kind", "这个操作不适用于这种差异，请写下处理说明。",
                            "This action does not settle this kind of difference; settle it with a note.")
    return row


def _settle(shop: Shop, row: BillDifference, action: str, words: tuple[str, str], facts: dict[str, object], *,
            actor: str, ip: str | None, order: Order | None) -> Settled:
    """Mark the difference settled by ``action``, with its audit event, once (compare-and-set on resolved_at)."""
    now = shop.now()
    note = f"{words[0]} {words[1]}"[:300]
    with write_transaction():
        changed = BillDifference.update(resolved_at=now, resolved_by=actor, resolution=note).where(
            (BillDifference.id == row.id) & BillDifference.resolved_at.is_null()).execute()
        if not changed:
            raise ActionRefused(409, "already_settled", "这条差异已经处理过了。", "This difference is settled already.")
        audit.record(f"bill_difference.{action}", at=now, actor=actor, ip=ip, order=order,
                     detail={"difference": row.id, "kind": row.kind, "bill_date": _day(row.bill_date), **facts})
    return Settled(row.id, *words)


def _day(value: dt.date | str) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def issue_missing_license(shop: Shop, difference_id: int, *, actor: str, ip: str | None) -> Settled:
    """Ask the payment service about the order a "paid, not licensed" difference names; if paid, fulfil it the usual way."""
    row: BillDifference | None = None
    try:
        row = _open_row(difference_id, "issue_license")
        n = names_of(row.kind)
        order = Order.get_or_none(Order.out_trade_no == row.out_trade_no) if row.out_trade_no else None
        if order is None or is_pack(order.out_trade_no):
            raise ActionRefused(409, "not_our_order",
                                f"{n.zh_short}收了一笔本店没有下过的订单的款：请在{n.merchant_site}退款，再写下处理说明。",
                                f"{n.en_short} took a payment for an order this shop never placed: refund it in "
                                f"{n.merchant_site_en}, then settle it with a note.")
        if License.get_or_none(License.order == order.id) is not None:
            return _settle(shop, row, "license_issued", ("许可证已经发放。", "The license is issued already."),
                           {"result": "already_licensed"}, actor=actor, ip=ip, order=order)
        try:
            answer = shop.wechat.query_by_out_trade_no(order.out_trade_no)
        except WeChatPayError as exc:
            raise ActionRefused(503, n.unavailable, f"{n.zh}暂时没有回答，请稍后再试。",
                                f"{n.en} did not answer ({type(exc).__name__}); try again shortly.") from exc
        state = answer.get("trade_state") if isinstance(answer, dict) else None
        if state != "SUCCESS":
            raise ActionRefused(409, n.not_paid, f"{n.zh}说这笔订单的状态是 {state}，没有要补发的许可证。",
                                f"{n.en} says the order is {state}: no license is owed.")
        try:
            result = apply_transaction(shop, answer, source="bill", ip=ip)
        except UnusableTransaction as exc:
            raise ActionRefused(409, "unusable_answer", f"{n.zh}的回答缺少必要的内容，没有发放许可证。",
                                f"{n.en}'s answer lacks what a license needs ({exc}); nothing was issued.") from exc
        order = Order.get_by_id(order.id)
        if License.get_or_none(License.order == order.id) is None:
            flag = order.flag or result
            raise ActionRefused(409, "order_flagged",
                                f"订单被标记为 {flag}，不能自动发放：请在订单页核对（退款，或赠送许可证），再写下处理说明。",
                                f"The order is flagged {flag} ({(order.flag_detail or result)[:120]}), so nothing is "
                                "issued by itself: look at its order page (refund it, or give a license by hand), "
                                "then settle it with a note.")
        return _settle(shop, row, "license_issued",
                       (f"{n.zh_short}确认已付款，已按正常流程发放许可证。", f"{n.en_short} confirmed the payment; the license is issued."),
                       {"transaction_id": answer.get("transaction_id"), "result": result},
                       actor=actor, ip=ip, order=order)
    except ActionRefused as refused:
        raise _refuse(shop, "license_issued", row, difference_id, refused, actor=actor, ip=ip) from None


def adopt_refund(shop: Shop, difference_id: int, *, actor: str, ip: str | None) -> Settled:
    """Ask the payment service about a refund its bill lists and we do not hold as done; settle it by the one refund path."""
    row: BillDifference | None = None
    try:
        row = _open_row(difference_id, "adopt_refund")
        n = names_of(row.kind)
        if not row.out_refund_no:
            raise ActionRefused(409, "no_refund_number", "账单行没有退款单号，请写下处理说明。",
                                "The bill line names no refund; settle it with a note.")
        order = Order.get_or_none(Order.out_trade_no == row.out_trade_no) if row.out_trade_no else None
        if order is None:
            raise ActionRefused(409, "not_our_order", "这笔退款不属于本店的订单，请写下处理说明。",
                                "The refund is of an order this shop never placed; settle it with a note.")
        done = Refund.get_or_none(Refund.out_refund_no == row.out_refund_no)
        if done is not None and done.status == "SUCCESS":
            return _settle(shop, row, "refund_adopted", ("这笔退款已经记下了。", "The refund is recorded already."),
                           {"out_refund_no": row.out_refund_no, "result": "already_recorded"},
                           actor=actor, ip=ip, order=order)
        try:
            if n is ALIPAY_NAMES:
                # Alipay is asked about a refund by its order's number too (the refund may be one we never
                # made); only the payment router, there whenever Alipay is set up, takes it.
                router: Any = shop.wechat
                answer = router.query_refund(row.out_refund_no, out_trade_no=order.out_trade_no)
            else:
                answer = shop.wechat.query_refund(row.out_refund_no)
        except WeChatPayError as exc:
            raise ActionRefused(503, n.unavailable, f"{n.zh}暂时没有回答，请稍后再试。",
                                f"{n.en} did not answer ({type(exc).__name__}); try again shortly.") from exc
        result = settle_refund(shop, answer, source="bill", ip=ip, actor="alipay" if n is ALIPAY_NAMES else "wechat")
        done = Refund.get_or_none(Refund.out_refund_no == row.out_refund_no)
        if done is None or done.status != "SUCCESS":
            if result == "processing":
                raise ActionRefused(409, "refund_processing", f"{n.zh}说这笔退款还在处理中，退款成功后再试。",
                                    f"{n.en} says the refund is still processing; try again once it succeeds.")
            order = Order.get_by_id(order.id)
            raise ActionRefused(409, "refund_unmatched",
                                "这笔退款与订单对不上（金额或可退金额不符），订单已标记：请在订单页核对，再写下处理说明。",
                                f"The refund does not fit the order ({(order.flag_detail or result)[:120]}); the "
                                "order is flagged: look at its order page, then settle it with a note.")
        return _settle(shop, row, "refund_adopted",
                       (f"已按{n.zh_short}的记录登记这笔退款。", f"The refund is recorded as {n.en_short} made it."),
                       {"out_refund_no": row.out_refund_no, "amount_fen": done.amount_fen, "result": result},
                       actor=actor, ip=ip, order=Order.get_by_id(order.id))
    except ActionRefused as refused:
        raise _refuse(shop, "refund_adopted", row, difference_id, refused, actor=actor, ip=ip) from None
