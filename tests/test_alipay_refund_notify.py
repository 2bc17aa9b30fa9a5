"""Alipay's refund notifications: a trade_status_sync carrying refund_fee / gmt_refund / out_biz_no.

Alipay has no refund notify_url: a refund (ours, or one made in Alipay's merchant centre) is told
to the payment's notify_url as a trade notification. ``refund_fee`` is the trade's *total* refunded
so far, ``out_biz_no`` the refund's out_request_no, and ``trade_status`` is TRADE_CLOSED after a full
refund (with gmt_close) or still TRADE_SUCCESS after a partial one. Each is checked like a payment
notification, then settled by the rule WeChat's refunds follow (billing/refunds.py): our own
refund is settled, an unknown one that fits the order is adopted, one that does not fit flags it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from conftest import MODELS_BINDING
from servers import wait_for
from test_alipay_billing import AlipayShop, place, shop_fixtures, signed_by_the_simulator

import models


shop, _calm = shop_fixtures("alipay_refund_shop")


def paid(shop: AlipayShop) -> dict[str, Any]:
    order = place(shop)
    assert shop.control("POST", f"trades/{order['out_trade_no']}/pay").status_code == 200
    shop.wait_for_status(order, "fulfilled")
    return order


def row_of(order: dict[str, Any]) -> Any:
    with MODELS_BINDING.command(), models.db.connection_context():
        return models.Order.get(models.Order.public_id == order["order_id"])


def refunds_of(order: dict[str, Any]) -> list[Any]:
    with MODELS_BINDING.command(), models.db.connection_context():
        found = models.Order.get(models.Order.public_id == order["order_id"])
        return list(models.Refund.select().where(models.Refund.order == found.id).order_by(models.Refund.id))


def license_revoked(order: dict[str, Any]) -> bool:
    with MODELS_BINDING.command(), models.db.connection_context():
        found = models.Order.get(models.Order.public_id == order["order_id"])
        return models.License.get(models.License.order == found.id).revoked_at is not None


def actions(order: dict[str, Any]) -> list[str]:
    with MODELS_BINDING.command(), models.db.connection_context():
        found = models.Order.get(models.Order.public_id == order["order_id"])
        return [e.action for e in models.AuditEvent.select().where(models.AuditEvent.order == found.id)
                .order_by(models.AuditEvent.id)]


def succeeded_by(order: dict[str, Any]) -> str:
    """Where the word that settled the order's refund came from."""
    with MODELS_BINDING.command(), models.db.connection_context():
        found = models.Order.get(models.Order.public_id == order["order_id"])
        event = models.AuditEvent.get((models.AuditEvent.order == found.id)
                                      & (models.AuditEvent.action == "refund.succeeded"))
        detail = event.detail if isinstance(event.detail, dict) else json.loads(event.detail)
        return str(detail["source"])


def deliveries_of(shop: AlipayShop, order: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in shop.control("GET", "deliveries").json() if d["out_trade_no"] == order["out_trade_no"]]


def settled(shop: AlipayShop, order: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Wait until the trade's first ``count`` notifications were answered."""
    return wait_for(lambda: (lambda ds: ds if len(ds) >= count and all(d["attempts"] for d in ds[:count])
                             else None)(deliveries_of(shop, order)), 30) or deliveries_of(shop, order)


def merchant_centre_refund(shop: AlipayShop, order: dict[str, Any], amount: str, **more: Any) -> dict[str, Any]:
    answer = shop.control("POST", f"trades/{order['out_trade_no']}/refund", {"refund_amount": amount, **more})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_a_full_refund_made_in_alipays_merchant_centre_is_adopted_and_revokes_the_license(shop: AlipayShop) -> None:
    order = paid(shop)
    merchant_centre_refund(shop, order, "99.00")
    view = shop.wait_for_status(order, "refunded")
    assert view["status"] == "refunded" and license_revoked(order)
    [refund] = refunds_of(order)
    assert refund.status == "SUCCESS" and refund.amount_fen == 9900 and refund.actor == "alipay"
    assert "refund.adopted" in actions(order) and "refund.succeeded" in actions(order)
    [_, note] = settled(shop, order, 2)
    assert note["trade_status"] == "TRADE_CLOSED" and note["attempts"][0]["body"] == "success"


def test_a_partial_refund_in_the_merchant_centre_is_adopted_for_its_own_amount_and_keeps_the_license(
        shop: AlipayShop) -> None:
    order = paid(shop)
    merchant_centre_refund(shop, order, "30.00")
    shop.wait_for_status(order, "partially_refunded")
    merchant_centre_refund(shop, order, "20.00")
    # The second notification says refund_fee 50.00 (the trade's total so far): this refund is 20.00.
    assert wait_for(lambda: len(refunds_of(order)) == 2 or None, 30)
    assert [(r.amount_fen, r.status) for r in refunds_of(order)] == [(3000, "SUCCESS"), (2000, "SUCCESS")]
    assert shop.poll(order)["status"] == "partially_refunded" and not license_revoked(order)
    assert [d["trade_status"] for d in settled(shop, order, 3)] == ["TRADE_SUCCESS"] * 3


def test_our_refund_whose_answer_was_lost_is_settled_by_the_notification(shop: AlipayShop) -> None:
    from billing.refunds import request_refund

    order = paid(shop)
    # Alipay refunds, but its answer never reaches us (nor do the client's two retries'): only the
    # notification can tell.
    shop.control("POST", "faults", {"gateway": {"alipay.trade.refund": ["lost_answer", "http_error", "http_error"]}})
    with models.db.connection_context():  # the call goes to the simulator this same server answers
        refund = request_refund(shop.shop, row_of(order), amount_fen=9900, reason="不想要了",
                                revoke_license=True, actor="test")
    shop.wait_for_status(order, "refunded")
    [settled_refund] = refunds_of(order)
    assert settled_refund.out_refund_no == refund.out_refund_no and settled_refund.status == "SUCCESS"
    assert succeeded_by(order) == "alipay_notification"
    assert license_revoked(order) and "refund.adopted" not in actions(order)


def test_the_notification_of_our_own_settled_refund_is_a_duplicate(shop: AlipayShop) -> None:
    from billing.refunds import request_refund

    order = paid(shop)
    with models.db.connection_context():
        refund = request_refund(shop.shop, row_of(order), amount_fen=1000, reason="部分退款", revoke_license=False,
                                actor="test")
    assert refund.status == "SUCCESS"
    [_, note] = settled(shop, order, 2)
    assert note["attempts"][0]["body"] == "success"
    assert len(refunds_of(order)) == 1 and row_of(order).flag is None
    assert actions(order).count("refund.succeeded") == 1


def test_thirty_copies_of_a_refund_notification_adopt_one_refund(shop: AlipayShop) -> None:
    order = paid(shop)
    shop.control("POST", "faults", {"repeat_notifications": 30})
    merchant_centre_refund(shop, order, "99.00")
    note = wait_for(lambda: (lambda ds: ds[1] if len(ds) == 2 and len(ds[1]["attempts"]) == 30 else None)(
        deliveries_of(shop, order)), 30) or deliveries_of(shop, order)[-1]
    assert len(note["attempts"]) == 30 and all(a["body"] == "success" for a in note["attempts"])
    assert len(refunds_of(order)) == 1 and actions(order).count("refund.succeeded") == 1


def refund_form(shop: AlipayShop, order: dict[str, Any], **change: str) -> dict[str, str]:
    row = row_of(order)
    return signed_by_the_simulator(shop, **{
        "out_trade_no": order["out_trade_no"], "trade_no": row.transaction_id, "total_amount": "99.00",
        "trade_status": "TRADE_SUCCESS", "out_biz_no": "HZ" + uuid.uuid4().hex[:20], "refund_fee": "10.00",
        "gmt_refund": "2026-12-06 15:00:00.000", **change})


def test_a_tampered_refund_notification_is_refused_and_changes_nothing(shop: AlipayShop) -> None:
    order = paid(shop)
    form = refund_form(shop, order)
    form["refund_fee"] = "99.00"  # changed after Alipay signed it
    answer = requests.post(shop.url + "/alipay/notify/trade", data=form, timeout=30)
    assert answer.status_code == 400 and answer.text != "success"
    assert refunds_of(order) == [] and shop.poll(order)["status"] == "fulfilled" and not license_revoked(order)


@pytest.mark.parametrize("change", [
    {"refund_fee": "120.00"},  # more than the order's price
    {"trade_no": "2026120622001999999999999999"},  # another trade than the one that paid the order
    {"refund_fee": "abc"},
])
def test_an_authentic_refund_notification_that_does_not_fit_the_order_flags_it(
        shop: AlipayShop, change: dict[str, str]) -> None:
    order = paid(shop)
    answer = requests.post(shop.url + "/alipay/notify/trade", data=refund_form(shop, order, **change), timeout=30)
    if change.get("refund_fee") == "abc":  # not even a refund amount: refused like any malformed notification
        assert answer.status_code == 400
        assert row_of(order).flag is None
    else:
        assert answer.status_code == 200 and answer.text == "success"  # heard; kept for the creator
        assert row_of(order).flag == "REFUND_UNMATCHED" and "refund.unmatched" in actions(order)
    assert refunds_of(order) == [] and shop.poll(order)["status"] == "fulfilled" and not license_revoked(order)


def test_a_refund_notification_for_a_refund_alipay_does_not_know_is_not_adopted(shop: AlipayShop) -> None:
    """Signed, but Alipay's own refund query knows no such refund: nothing is guessed, the creator is told."""
    order = paid(shop)
    form = refund_form(shop, order, refund_fee="0.00")
    answer = requests.post(shop.url + "/alipay/notify/trade", data=form, timeout=30)
    assert answer.status_code == 200
    assert refunds_of(order) == [] and row_of(order).flag == "REFUND_UNMATCHED"


def test_alipay_down_while_a_refund_is_told_the_notification_is_refused_then_settled_on_resend(
        shop: AlipayShop) -> None:
    """An unknown refund's own amount comes from Alipay's refund query; if Alipay cannot answer, say 'fail'."""
    order = paid(shop)
    shop.control("POST", "faults", {"gateway": {"alipay.trade.fastpay.refund.query": ["unavailable"] * 3}})
    merchant_centre_refund(shop, order, "40.00")
    [_, note] = settled(shop, order, 2)
    assert note["attempts"][0]["status"] != 200 and refunds_of(order) == []
    shop.control("POST", f"trades/{order['out_trade_no']}/resend")
    shop.wait_for_status(order, "partially_refunded")
    assert [(r.amount_fen, r.status) for r in refunds_of(order)] == [(4000, "SUCCESS")]
