"""The daily trade bill: every line WeChat Pay lists for a day, compared with our ledger, and the differences kept."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from models import AlipayBillCheck, BillCheck, BillDifference, License, Order, Refund
from wechatpay.bills import TradeBill
from wechatpay.errors import BillNotReady, NoBill, WeChatPayError

from . import audit
from .refunds import UNSETTLED, settle_refund
from .shop import Shop, is_pack
from database import write_transaction

log = logging.getLogger(__name__)

BEIJING = dt.timezone(dt.timedelta(hours=8))
# WeChat publishes the day's bills after 10:00 Beijing time; before that "no bill" may only mean "not yet".
PUBLISHED_AFTER = dt.time(10, 0)
# How many past days the job looks at, so a day missed while the service was down is still checked.
LOOK_BACK_DAYS = 3
# "No bill" (NO_STATEMENT_EXIST) means no trade that day *or* not generated yet: for a day we have
# payments or refunds on, it is "not ready" this long after 10:00; then the day is compared with nothing.
NO_BILL_GRACE = dt.timedelta(days=1)
# Refunds a bill lists that we do not hold as settled are asked about, at most this many a check.
REFUND_QUERIES_PER_CHECK = 50

KINDS = {
    "paid_not_licensed": ("微信已收款，本店未发许可证", "Paid at WeChat, not licensed here"),
    "unknown_to_wechat": ("本店已收款，微信账单中没有", "Paid here, not in WeChat's bill"),
    "amount_differs": ("金额不一致", "Amounts differ"),
    "transaction_differs": ("微信订单号不一致", "WeChat transaction ids differ"),
    "refund_missing_here": ("微信已退款，本店没有记录", "Refunded at WeChat, not here"),
    "refund_missing_at_wechat": ("本店已退款，微信账单中没有", "Refunded here, not in WeChat's bill"),
    "unreadable_line": ("账单行无法读取", "A line of WeChat's bill could not be read"),
    # Alipay's bill (billing/alipay_bill.py), its kinds apart so a day's two bills never share a key.
    "alipay_paid_not_licensed": ("支付宝已收款，本店未发许可证", "Paid at Alipay, not licensed here"),
    "alipay_unknown_to_alipay": ("本店已收款，支付宝账单中没有", "Paid here, not in Alipay's bill"),
    "alipay_amount_differs": ("金额与支付宝账单不一致", "Amounts differ from Alipay's bill"),
    "alipay_transaction_differs": ("支付宝交易号不一致", "Alipay trade numbers differ"),
    "alipay_refund_missing_here": ("支付宝已退款，本店没有记录", "Refunded at Alipay, not here"),
    "alipay_refund_missing_at_alipay": ("本店已退款，支付宝账单中没有", "Refunded here, not in Alipay's bill"),
    "alipay_unreadable_line": ("支付宝账单无法读取", "Alipay's bill could not be read"),
}
WECHAT_ORDERS = Order.payment_method != "alipay"  # what WeChat's bill can list


def bill_names(kind: str) -> dict[str, str]:
    """Whose bill a difference kind came from, in words: Alipay's kinds start ``alipay_``, the rest are WeChat Pay's."""
    if kind.startswith("alipay_"):
        return {"method": "alipay", "zh": "支付宝", "en": "Alipay", "bill_zh": "支付宝账单", "bill_en": "Alipay's bill"}
    return {"method": "wechat", "zh": "微信", "en": "WeChat", "bill_zh": "微信账单", "bill_en": "WeChat's bill"}


@dataclass(frozen=True)
class Difference:
    """One disagreement between a bill line (or its absence) and our ledger."""

    kind: str
    detail: str
    out_trade_no: str | None = None
    transaction_id: str | None = None
    out_refund_no: str | None = None
    wechat_fen: int | None = None
    ours_fen: int | None = None
    line: int | None = None  # the bill's line number, for a line that could not be read

    def key(self, bill_date: dt.date) -> str:
        """Identify the difference so that checking the same day again records nothing twice."""
        return ":".join((bill_date.isoformat(), self.kind, self.out_trade_no or "", self.out_refund_no or "",
                         str(self.line or "")))[:160]


def beijing_day(moment: dt.datetime) -> dt.date:
    """The Beijing calendar day of an aware time: the day a bill is cut by."""
    return moment.astimezone(BEIJING).date()


def published(bill_date: dt.date, now: dt.datetime, grace: dt.timedelta = dt.timedelta(0)) -> bool:
    """Tell whether WeChat should have published the bill of ``bill_date`` by ``now`` (plus ``grace``)."""
    return now >= dt.datetime.combine(bill_date + dt.timedelta(days=1), PUBLISHED_AFTER, BEIJING) + grace


def _day_of(text: str | None, fallback: dt.datetime | None) -> dt.date | None:
    """The Beijing day of WeChat's RFC 3339 time (success_time), else of the time we learnt it."""
    if text:
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return beijing_day(moment)
    return beijing_day(fallback) if fallback is not None else None


def _refund_day(refund: Refund) -> dt.date | None:
    """The Beijing day the bill lists a refund on: WeChat's success_time, else when we learnt of it."""
    return _day_of(refund.success_time, refund.settled_at)


def traded_on(bill_date: dt.date) -> bool:
    """Tell whether we hold a payment or a refund WeChat dates on ``bill_date``."""
    start, end = _around(bill_date)
    paid = Order.select().where(Order.transaction_id.is_null(False) & (Order.paid_at >= start) & (Order.paid_at < end)
                                & WECHAT_ORDERS)
    refunds = Refund.select().join(Order).where((Refund.status == "SUCCESS") & (Refund.settled_at >= start)
                                                & (Refund.settled_at < end) & WECHAT_ORDERS)
    return (any(_success_day(o) == bill_date for o in paid)
            or any(_refund_day(r) == bill_date for r in refunds))


def _success_day(order: Order) -> dt.date | None:
    """The Beijing day WeChat says the order was paid (its success_time), else the day we learnt it."""
    return _day_of(order.success_time, order.paid_at)


def _around(bill_date: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """A UTC window wide enough for every time that falls on the Beijing day, with a day's slack for late news."""
    start = dt.datetime.combine(bill_date, dt.time(), BEIJING) - dt.timedelta(days=1)
    return start.astimezone(dt.timezone.utc), (start + dt.timedelta(days=3)).astimezone(dt.timezone.utc)


def compare(bill: TradeBill, bill_date: dt.date) -> list[Difference]:
    """Compare every line of the day's bill with our ledger, and our ledger's day with the bill; read only."""
    found: list[Difference] = [
        Difference("unreadable_line", f"line {bad.line}: {bad.reason} — {bad.text[:60]!r}", line=bad.line)
        for bad in bill.unreadable]
    billed_orders: set[str] = set()
    for row in bill.payments:
        billed_orders.add(row.out_trade_no)
        order = Order.get_or_none(Order.out_trade_no == row.out_trade_no)
        facts: dict[str, Any] = dict(out_trade_no=row.out_trade_no, transaction_id=row.transaction_id, wechat_fen=row.total_fen)
        if order is None:
            found.append(Difference("paid_not_licensed", "WeChat lists a payment for an order we never placed",
                                    **facts))
            continue
        if row.total_fen != order.amount_fen:
            found.append(Difference("amount_differs", f"WeChat says {row.total_fen} fen, the order is "
                                    f"{order.amount_fen} fen", ours_fen=order.amount_fen, **facts))
        if order.transaction_id is not None and order.transaction_id != row.transaction_id:
            found.append(Difference("transaction_differs", f"our order records {order.transaction_id}",
                                    ours_fen=order.amount_fen, **facts))
        if not is_pack(order.out_trade_no) and License.get_or_none(License.order == order.id) is None:
            found.append(Difference("paid_not_licensed", f"the order is {order.status}"
                                    + (f", flagged {order.flag}" if order.flag else "") + " and has no license",
                                    ours_fen=order.amount_fen, **facts))

    start, end = _around(bill_date)
    paid_here = Order.select().where(Order.transaction_id.is_null(False) & (Order.paid_at >= start)
                                     & (Order.paid_at < end) & WECHAT_ORDERS)
    for order in paid_here:
        if order.out_trade_no not in billed_orders and _success_day(order) == bill_date:
            found.append(Difference("unknown_to_wechat", f"the order is {order.status} here; WeChat's bill has no "
                                    "payment for it", out_trade_no=order.out_trade_no,
                                    transaction_id=order.transaction_id, ours_fen=order.amount_fen))

    billed_refunds: set[str] = set()
    for row in bill.refunds:
        billed_refunds.add(row.out_refund_no)
        refund = Refund.get_or_none(Refund.out_refund_no == row.out_refund_no)
        facts = dict(out_trade_no=row.out_trade_no, transaction_id=row.transaction_id,
                     out_refund_no=row.out_refund_no, wechat_fen=row.refund_fen)
        if refund is not None and refund.status in UNSETTLED:
            # Still settling here (asked just now, WeChat did not answer): the refund job keeps asking,
            # and a refund stuck for 30 minutes needs attention on its own; not a lasting difference.
            continue
        if refund is None or refund.status != "SUCCESS":
            state = "we have no such refund" if refund is None else f"our refund is {refund.status}"
            found.append(Difference("refund_missing_here", state,
                                    ours_fen=None if refund is None else refund.amount_fen, **facts))
        elif refund.amount_fen != row.refund_fen:
            found.append(Difference("amount_differs", f"WeChat refunded {row.refund_fen} fen, we recorded "
                                    f"{refund.amount_fen} fen", ours_fen=refund.amount_fen, **facts))
    refunded_here = (Refund.select(Refund, Order).join(Order)
                     .where((Refund.status == "SUCCESS") & (Refund.settled_at >= start) & (Refund.settled_at < end)
                            & WECHAT_ORDERS))
    for refund in refunded_here:
        if refund.out_refund_no not in billed_refunds and _refund_day(refund) == bill_date:
            found.append(Difference("refund_missing_at_wechat", "our refund succeeded; WeChat's bill has no line "
                                    "for it", out_trade_no=refund.order.out_trade_no,
                                    transaction_id=refund.order.transaction_id, out_refund_no=refund.out_refund_no,
                                    ours_fen=refund.amount_fen))
    return found


def check_bill(shop: Shop, bill_date: dt.date, now: dt.datetime) -> dict[str, Any]:
    """Download the bill of ``bill_date``, compare it, and keep the new differences; say what happened.

    The answer's ``state`` is ``checked``, or ``not_ready`` when WeChat has not published
    the bill yet (asked again later, never an error). Raises BillIntegrityError and the
    client's other errors for the caller (the job) to report.
    """
    try:
        bill = shop.wechat.trade_bill(bill_date)
    except BillNotReady:
        return {"date": bill_date.isoformat(), "state": "not_ready"}
    except NoBill:
        # "No bill" also means "not generated yet": a day we traded on gets a day's grace after 10:00.
        if not published(bill_date, now, NO_BILL_GRACE if traded_on(bill_date) else dt.timedelta(0)):
            return {"date": bill_date.isoformat(), "state": "not_ready"}
        bill = TradeBill(rows=(), summary=None)  # published and empty: nothing was paid or refunded that day
    settle_billed_refunds(shop, bill)
    differences = compare(bill, bill_date)
    new = record(bill_date, differences, now, lines=len(bill.rows))
    return {"date": bill_date.isoformat(), "state": "checked", "lines": len(bill.rows),
            "differences": len(differences), "new": [d.kind for d in new]}


def settle_billed_refunds(shop: Shop, bill: TradeBill) -> int:
    """Ask WeChat about each refund the bill lists that we do not hold as settled, and settle it by the answer.

    A refund still PROCESSING here whose notification was lost, or one made by hand in 商户平台
    (an out_refund_no we never issued): the one settling path adopts or settles it, so the
    comparison that follows finds no difference where there is none. Returns how many were asked.
    """
    asked = 0
    for row in bill.refunds:
        if asked >= REFUND_QUERIES_PER_CHECK or not row.out_refund_no:
            break
        refund = Refund.get_or_none(Refund.out_refund_no == row.out_refund_no)
        if refund is not None and refund.status not in UNSETTLED:
            continue
        if refund is None and Order.get_or_none(Order.out_trade_no == row.out_trade_no) is None:
            continue  # not one of our orders: the comparison reports it
        asked += 1
        try:
            settle_refund(shop, shop.wechat.query_refund(row.out_refund_no), source="bill")
        except WeChatPayError as exc:
            log.warning("could not ask WeChat about billed refund %s: %s", row.out_refund_no[:64], exc)
    return asked


def record(bill_date: dt.date, differences: list[Difference], now: dt.datetime, *, lines: int,
           checks: Any = BillCheck, method: str = "wechat") -> list[Difference]:
    """Keep the differences not seen before and mark the day checked, in one transaction; return the new ones.

    ``checks`` is the table of checked days: WeChat's (BillCheck) or Alipay's (AlipayBillCheck).
    """
    with write_transaction():
        known = {row.key for row in BillDifference.select(BillDifference.key)
                 .where(BillDifference.bill_date == bill_date)}
        new = [d for d in differences if d.key(bill_date) not in known]
        for difference in new:
            BillDifference.create(bill_date=bill_date, kind=difference.kind, out_trade_no=difference.out_trade_no,
                                  transaction_id=difference.transaction_id, out_refund_no=difference.out_refund_no,
                                  wechat_fen=difference.wechat_fen, ours_fen=difference.ours_fen,
                                  detail=difference.detail[:300], found_at=now, key=difference.key(bill_date))
        (checks.insert(bill_date=bill_date, checked_at=now, lines=lines, differences=len(differences))
         .on_conflict(conflict_target=[checks.bill_date],
                      update={checks.checked_at: now, checks.lines: lines, checks.differences: len(differences)})
         .execute())
        audit.record("bill.checked", at=now, detail={"date": bill_date.isoformat(), "lines": lines,
                                                     "differences": len(differences), "new": len(new),
                                                     **({"method": method} if method != "wechat" else {})})
    if new:
        log.warning("the %s trade bill of %s differs from our ledger in %d new line(s)", method, bill_date, len(new))
    return new


def days_to_check(now: dt.datetime) -> list[dt.date]:
    """The recent Beijing days, oldest first, whose bill has not been compared yet."""
    yesterday = beijing_day(now) - dt.timedelta(days=1)
    days = [yesterday - dt.timedelta(days=n) for n in range(LOOK_BACK_DAYS - 1, -1, -1)]
    done = {row.bill_date for row in BillCheck.select(BillCheck.bill_date).where(BillCheck.bill_date.in_(days))}
    return [day for day in days if day not in done]


def bill_differences(limit: int = 200) -> list[dict[str, Any]]:
    """The kept differences, newest day first, as the console shows them."""
    rows = BillDifference.select().order_by(BillDifference.bill_date.desc(), BillDifference.id).limit(limit)
    return [{"date": row.bill_date, "kind": row.kind, "label_zh": KINDS.get(row.kind, (row.kind, row.kind))[0],
             "label_en": KINDS.get(row.kind, (row.kind, row.kind))[1], "out_trade_no": row.out_trade_no,
             "transaction_id": row.transaction_id, "out_refund_no": row.out_refund_no,
             "wechat_fen": row.wechat_fen, "ours_fen": row.ours_fen, "detail": row.detail,
             "found_at": row.found_at, "id": row.id, "resolved_at": row.resolved_at, "resolved_by": row.resolved_by,
             "resolution": row.resolution, "names": bill_names(row.kind)} for row in rows]


def bill_checks(limit: int = 30, method: str = "wechat") -> list[dict[str, Any]]:
    """The days one method's bill was compared so far (WeChat Pay's, or Alipay's), newest first, with their counts."""
    checks: Any = AlipayBillCheck if method == "alipay" else BillCheck
    rows = checks.select().order_by(checks.bill_date.desc()).limit(limit)
    return [{"date": row.bill_date, "checked_at": row.checked_at, "lines": row.lines,
             "differences": row.differences} for row in rows]
