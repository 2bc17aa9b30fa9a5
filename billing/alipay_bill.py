"""Alipay's daily trade bill compared with our Alipay orders, both ways, by the rules WeChat's bill follows.

Alipay's 业务明细 lists each payment (交易) with its 支付宝交易号 and each refund (退款) with its
退款批次号/请求号 (our out_refund_no) and a negative 商家实收. What the bill has that we do not, and
what we hold as paid or refunded on that Beijing day that the bill lacks, are kept as differences
(billing.daily_bill.record), with kinds of their own so a day's two bills never mix.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from alipay.bills import REFUND, TRADE, TradeBill
from alipay.errors import MalformedError, NoBill
from models import AlipayBillCheck, License, Order, Refund

from .daily_bill import (LOOK_BACK_DAYS, NO_BILL_GRACE, Difference, _around, _refund_day, _success_day,
                         beijing_day, published, record)
from .refunds import UNSETTLED
from .shop import Shop

log = logging.getLogger(__name__)

ALIPAY_ORDERS = Order.payment_method == "alipay"


def compare_alipay(bill: TradeBill, bill_date: dt.date) -> list[Difference]:
    """Compare every row of Alipay's bill with our ledger, and our Alipay orders of the day with the bill; read only."""
    found: list[Difference] = []
    billed_orders: set[str] = set()
    for row in (r for r in bill.rows if r.kind == TRADE):
        billed_orders.add(row.out_trade_no)
        order = Order.get_or_none(Order.out_trade_no == row.out_trade_no)
        facts: dict[str, Any] = dict(out_trade_no=row.out_trade_no[:32], transaction_id=row.trade_no[:32],
                                     wechat_fen=row.order_fen)
        if order is None:
            found.append(Difference("alipay_paid_not_licensed", "Alipay lists a payment for an order we never placed",
                                    **facts))
            continue
        if row.order_fen != order.amount_fen:
            found.append(Difference("alipay_amount_differs", f"Alipay says {row.order_fen} fen, the order is "
                                    f"{order.amount_fen} fen", ours_fen=order.amount_fen, **facts))
        if order.transaction_id is not None and order.transaction_id != row.trade_no:
            found.append(Difference("alipay_transaction_differs", f"our order records {order.transaction_id}",
                                    ours_fen=order.amount_fen, **facts))
        if License.get_or_none(License.order == order.id) is None:
            found.append(Difference("alipay_paid_not_licensed", f"the order is {order.status}"
                                    + (f", flagged {order.flag}" if order.flag else "") + " and has no license",
                                    ours_fen=order.amount_fen, **facts))

    start, end = _around(bill_date)
    paid_here = Order.select().where(Order.transaction_id.is_null(False) & (Order.paid_at >= start)
                                     & (Order.paid_at < end) & ALIPAY_ORDERS)
    for order in paid_here:
        if order.out_trade_no not in billed_orders and _success_day(order) == bill_date:
            found.append(Difference("alipay_unknown_to_alipay", f"the order is {order.status} here; Alipay's bill "
                                    "has no payment for it", out_trade_no=order.out_trade_no,
                                    transaction_id=order.transaction_id, ours_fen=order.amount_fen))

    billed_refunds: set[str] = set()
    for row in (r for r in bill.rows if r.kind == REFUND):
        billed_refunds.add(row.refund_request_no)
        refund = Refund.get_or_none(Refund.out_refund_no == row.refund_request_no)
        facts = dict(out_trade_no=row.out_trade_no[:32], transaction_id=row.trade_no[:32],
                     out_refund_no=row.refund_request_no[:64], wechat_fen=-row.received_fen)
        if refund is not None and refund.status in UNSETTLED:
            continue  # still settling here: the refund job keeps asking
        if refund is None or refund.status != "SUCCESS":
            state = "we have no such refund" if refund is None else f"our refund is {refund.status}"
            found.append(Difference("alipay_refund_missing_here", state,
                                    ours_fen=None if refund is None else refund.amount_fen, **facts))
        elif refund.amount_fen != -row.received_fen:
            found.append(Difference("alipay_amount_differs", f"Alipay refunded {-row.received_fen} fen, we "
                                    f"recorded {refund.amount_fen} fen", ours_fen=refund.amount_fen, **facts))
    refunded_here = (Refund.select(Refund, Order).join(Order)
                     .where((Refund.status == "SUCCESS") & (Refund.settled_at >= start) & (Refund.settled_at < end)
                            & ALIPAY_ORDERS))
    for refund in refunded_here:
        if refund.out_refund_no not in billed_refunds and _refund_day(refund) == bill_date:
            found.append(Difference("alipay_refund_missing_at_alipay", "our refund succeeded; Alipay's bill has no "
                                    "line for it", out_trade_no=refund.order.out_trade_no,
                                    transaction_id=refund.order.transaction_id, out_refund_no=refund.out_refund_no,
                                    ours_fen=refund.amount_fen))
    return found


def traded_on_alipay(bill_date: dt.date) -> bool:
    """Tell whether we hold an Alipay payment or refund of ``bill_date`` (so "no bill" may only mean "not yet")."""
    start, end = _around(bill_date)
    paid = Order.select().where(Order.transaction_id.is_null(False) & (Order.paid_at >= start)
                                & (Order.paid_at < end) & ALIPAY_ORDERS)
    refunds = Refund.select().join(Order).where((Refund.status == "SUCCESS") & (Refund.settled_at >= start)
                                                & (Refund.settled_at < end) & ALIPAY_ORDERS)
    return any(_success_day(o) == bill_date for o in paid) or any(_refund_day(r) == bill_date for r in refunds)


def check_alipay_bill(shop: Shop, bill_date: dt.date, now: dt.datetime) -> dict[str, Any]:
    """Download Alipay's bill of ``bill_date``, compare it and keep the new differences.

    ``state`` is ``checked`` or ``not_ready``; Alipay's other errors go to the caller (the job).
    A bill whose rows disagree with its own totals is kept as one difference, never half-read.
    """
    setup = getattr(shop, "alipay", None)
    if setup is None:
        return {"date": bill_date.isoformat(), "state": "off"}
    try:
        bill = setup.client.trade_bill(bill_date)
        differences = compare_alipay(bill, bill_date)
        lines = len(bill.rows)
    except NoBill:
        # Alipay answers "no bill" for a day without trades, and for one not published yet.
        if not published(bill_date, now, NO_BILL_GRACE if traded_on_alipay(bill_date) else dt.timedelta(0)):
            return {"date": bill_date.isoformat(), "state": "not_ready"}
        differences, lines = compare_alipay(TradeBill(rows=[], payments=0, refunds=0, received_fen=0), bill_date), 0
    except MalformedError as exc:
        differences, lines = [Difference("alipay_unreadable_line", f"the bill: {exc}"[:300], line=0)], 0
    new = record(bill_date, differences, now, lines=lines, checks=AlipayBillCheck, method="alipay")
    return {"date": bill_date.isoformat(), "state": "checked", "lines": lines,
            "differences": len(differences), "new": [d.kind for d in new]}


def alipay_days_to_check(now: dt.datetime) -> list[dt.date]:
    """The recent Beijing days, oldest first, whose Alipay bill has not been compared yet."""
    yesterday = beijing_day(now) - dt.timedelta(days=1)
    days = [yesterday - dt.timedelta(days=n) for n in range(LOOK_BACK_DAYS - 1, -1, -1)]
    done = {row.bill_date for row in AlipayBillCheck.select(AlipayBillCheck.bill_date)
            .where(AlipayBillCheck.bill_date.in_(days))}
    return [day for day in days if day not in done]
