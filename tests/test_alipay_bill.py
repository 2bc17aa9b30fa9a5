"""Alipay's daily bill (a GBK zip from the simulator) compared with our ledger by the daily bill job, both ways."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from conftest import MODELS_BINDING
from test_alipay_billing import AlipayShop, place, shop_fixtures

import models
from billing.daily_bill import BEIJING, KINDS, compare
from wechatpay.bills import TradeBill


shop, _calm = shop_fixtures("alipay_bill_shop")


def today() -> dt.date:
    return dt.datetime.now(BEIJING).date()


def paid(shop: AlipayShop, *, lose: bool = False) -> dict[str, Any]:
    if lose:
        shop.control("POST", "faults", {"lose_notifications": 1})
    order = place(shop)
    assert shop.control("POST", f"trades/{order['out_trade_no']}/pay").status_code == 200
    if not lose:
        shop.wait_for_status(order, "fulfilled")
    return order


def differences(kind_prefix: str = "") -> list[tuple[str, str | None, str | None]]:
    with MODELS_BINDING.command(), models.db.connection_context():
        return sorted((d.kind, d.out_trade_no, d.out_refund_no) for d in models.BillDifference.select()
                      if d.kind.startswith(kind_prefix))


def check_today(shop: AlipayShop) -> dict[str, Any]:
    from operations.jobs import check_daily_bills

    shop.control("POST", "faults", {"bills_same_day": True})
    with models.db.connection_context():  # the job calls the simulator this same server answers
        return check_daily_bills(shop.shop, shop.shop.now(), days=[today()])


def test_the_job_finds_differences_both_ways_in_alipays_bill(shop: AlipayShop) -> None:
    from billing.refunds import request_refund

    clean = paid(shop)
    # Alipay took the money, the notification was lost and nobody asked: Alipay's bill has it, we do not.
    unheard = paid(shop, lose=True)
    # Our ledger says paid and refunded where Alipay's bill says nothing (planted: a bug we must catch).
    planted = place(shop)
    refunded = paid(shop)
    with models.db.connection_context():
        row = models.Order.get(models.Order.out_trade_no == refunded["out_trade_no"])
        request_refund(shop.shop, row, amount_fen=1000, reason="部分退款", revoke_license=False, actor="test")
    now = shop.shop.now()
    ghost_refund = "RF" + uuid.uuid4().hex[:20].upper()
    with MODELS_BINDING.command(), models.db.connection_context():
        models.Order.update(transaction_id="2026120622001" + "9" * 15, paid_at=now, status="fulfilled").where(
            models.Order.out_trade_no == planted["out_trade_no"]).execute()
        clean_row = models.Order.get(models.Order.out_trade_no == clean["out_trade_no"])
        models.Refund.create(order=clean_row, out_refund_no=ghost_refund, amount_fen=500, reason="planted",
                             revoke_license=False, actor="test", status="SUCCESS", created_at=now, updated_at=now,
                             settled_at=now)
    summary = check_today(shop)
    assert today().isoformat() in summary["alipay"]["checked"], summary
    found = differences("alipay_")
    assert ("alipay_paid_not_licensed", unheard["out_trade_no"], None) in found
    assert ("alipay_unknown_to_alipay", planted["out_trade_no"], None) in found
    assert ("alipay_refund_missing_at_alipay", clean["out_trade_no"], ghost_refund) in found
    mine = {clean["out_trade_no"], unheard["out_trade_no"], planted["out_trade_no"], refunded["out_trade_no"]}
    assert {f for f in found if f[1] in mine} == {
        ("alipay_paid_not_licensed", unheard["out_trade_no"], None),
        ("alipay_unknown_to_alipay", planted["out_trade_no"], None),
        ("alipay_refund_missing_at_alipay", clean["out_trade_no"], ghost_refund)}
    # WeChat's comparison never speaks of Alipay orders.
    assert not [d for d in differences() if not d[0].startswith("alipay_") and d[1] in mine]
    again = check_today(shop)
    assert differences("alipay_") == found, again  # checked again by hand: found again, kept once
    with MODELS_BINDING.command(), models.db.connection_context():
        alerts = [a for a in models.Alert.select() if a.kind == "bill_differences" and "Alipay" in a.message]
    assert len(alerts) == 1


def test_every_alipay_kind_has_words_in_both_languages_that_name_alipay() -> None:
    kinds = [k for k in KINDS if k.startswith("alipay_")]
    assert {"alipay_paid_not_licensed", "alipay_unknown_to_alipay", "alipay_amount_differs",
            "alipay_transaction_differs", "alipay_refund_missing_here", "alipay_refund_missing_at_alipay",
            "alipay_unreadable_line"} == set(kinds)
    for kind in kinds:
        zh, en = KINDS[kind]
        assert "微信" not in zh and "WeChat" not in en, kind


def test_wechats_comparison_leaves_alipay_orders_out(shop: AlipayShop) -> None:
    order = paid(shop)
    with MODELS_BINDING.command(), models.db.connection_context():
        found = compare(TradeBill(rows=(), summary=None), today())
    assert not [d for d in found if d.out_trade_no == order["out_trade_no"]]
