"""Issue 24: an order we still hold as pending (or cancelled) that WeChat says was paid and refunded.

The payment's notification was lost, the learner complained, and the creator refunded it by hand
in 商户平台. A query then answers ``trade_state=REFUND`` (转入退款), or the refund's own notification
arrives first. Either way the payment happened: it is recorded, the order is flagged for the
creator with an alert, no license is issued (the money went back, in part or in full), and the
refund is adopted when WeChat tells of it.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import FakeClock, Shop
from test_notify_path import TX, FakeOrder
from test_wechat_billing import order_row, shop_of, wait_until
from test_wechat_edges import REFUND_URL, closes, refunds_of, run

import models
from billing.payments import judge_payment
from operations.alerts import look_for_trouble

FLAG = "REFUNDED_AT_WECHAT"


def refunded_by_hand(shop: Shop, order: dict[str, Any], fen: int) -> dict[str, Any]:
    """The creator refunds an order in 商户平台 (WeChat numbers the refund)."""
    made = shop.sandbox.control("POST", f"orders/{order['out_trade_no']}/refund", {"refund": fen})
    assert made.status_code == 201, made.text
    return dict(made.json())


def lost_payment(shop: Shop) -> dict[str, Any]:
    """An order paid at WeChat whose payment notification never reached us."""
    shop.sandbox.config.refund_delay = None  # each test settles its refunds itself
    shop.sandbox.state.config.refund_notify_url = REFUND_URL
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    return order


def at_wechat(shop: Shop, order: dict[str, Any]) -> dict[str, Any]:
    return dict(shop.sandbox.control("GET", f"orders/{order['out_trade_no']}").json())


def licenses() -> int:
    with models.db.connection_context():
        return int(models.License.select().count())


def actions() -> list[str]:
    with models.db.connection_context():
        return [e.action for e in models.AuditEvent.select().order_by(models.AuditEvent.id)]


def payment_results() -> list[str]:
    """What came of each payment notification we kept."""
    with models.db.connection_context():
        return [n.result for n in models.Notification.select().where(models.Notification.kind == "transaction")
                .order_by(models.Notification.id)]


def flagged_alerts() -> list[models.Alert]:
    with models.db.connection_context():
        return list(models.Alert.select().where(models.Alert.kind == "payment_flagged"))


def test_the_sandbox_says_refund_as_soon_as_a_refund_is_accepted(shop: Shop) -> None:
    order = lost_payment(shop)
    made = refunded_by_hand(shop, order, 100)
    assert made["status"] == "PROCESSING"
    assert at_wechat(shop, order)["trade_state"] == "REFUND"  # 转入退款: not only once the money is back


def test_a_query_answering_refund_records_the_payment_flags_the_order_and_issues_nothing(
        shop: Shop, clock: FakeClock) -> None:
    order = lost_payment(shop)
    refunded_by_hand(shop, order, 9900)

    clock.advance(30)
    summary = run(shop, "reconcile")

    row = order_row(order)
    assert (row.status, row.flag, row.trade_state) == ("pending", FLAG, "REFUND")
    assert row.transaction_id == at_wechat(shop, order)["transaction_id"] and row.paid_at is not None
    assert "9900" in (row.flag_detail or "")
    assert summary["flagged"] == 1 and summary["fulfilled"] == 0, summary
    assert licenses() == 0, "the money went back: nothing is issued"
    assert "payment.refunded_at_wechat" in actions() and "license.issued" not in actions()
    view = shop.poll(order)
    assert view["final"] is True and view["license"] is None and view["code_url"] is None
    assert view["error"]["code"] == "payment_refunded", view
    with models.db.connection_context():
        look_for_trouble(shop_of(shop), shop_of(shop).now())
    [alert] = flagged_alerts()
    assert FLAG in alert.message

    # Asked again (the job, a poll), nothing changes and nothing is written twice.
    clock.advance(60)
    assert run(shop, "reconcile")["queried"] == 0, "a flagged order waits for the creator"
    assert actions().count("payment.refunded_at_wechat") == 1


def test_the_refunds_notification_arriving_later_is_adopted_and_refunds_the_order(
        shop: Shop, clock: FakeClock) -> None:
    order = lost_payment(shop)
    made = refunded_by_hand(shop, order, 9900)
    clock.advance(30)
    run(shop, "reconcile")
    shop.sandbox.control("POST", f"refunds/{made['out_refund_no']}/settle", {"status": "SUCCESS"})  # dropped

    shop.sandbox.control("POST", "faults", {"notify": {"mode": "normal"}})
    resent = shop.sandbox.control("POST", f"refunds/{made['out_refund_no']}/resend")
    assert resent.status_code == 202, resent.text

    view = shop.wait_for_status(order, "refunded")
    assert view["status"] == "refunded" and view["license"] is None
    assert view["error"]["code"] == "payment_refunded"
    [refund] = refunds_of(order)
    assert (refund.out_refund_no, refund.status, refund.amount_fen) == (made["out_refund_no"], "SUCCESS", 9900)
    assert order_row(order).flag == FLAG, "the flag stays until the creator has looked"
    assert licenses() == 0


def test_a_refund_notification_before_any_word_of_the_payment_records_both(shop: Shop) -> None:
    order = lost_payment(shop)
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "normal"}})  # only the payment's was lost
    made = refunded_by_hand(shop, order, 3000)  # a partial refund
    shop.sandbox.control("POST", f"refunds/{made['out_refund_no']}/settle", {"status": "SUCCESS"})

    assert wait_until(lambda: refunds_of(order) and refunds_of(order)[0].status == "SUCCESS")
    row = order_row(order)
    assert (row.status, row.flag) == ("partially_refunded", FLAG)
    assert row.transaction_id == at_wechat(shop, order)["transaction_id"]
    assert "refund.adopted" in actions() and "refund.unknown" not in actions()
    assert actions().count("payment.refunded_at_wechat") == 1

    # The payment's own notification, re-sent by WeChat now, is the payment we recorded: still no license.
    before = actions()
    resent = shop.sandbox.control("POST", f"notifications/{order['out_trade_no']}/resend")
    assert resent.status_code == 202
    assert wait_until(lambda: payment_results() == ["duplicate"]), payment_results()
    assert licenses() == 0 and actions() == before


def test_a_cancelled_order_paid_and_refunded_at_wechat_is_flagged_not_closed_there(
        shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.config.refund_delay = None
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    order = shop.order()
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200
    shop.sandbox.pay(order["out_trade_no"])  # the QR still open at WeChat
    refunded_by_hand(shop, order, 9900)

    clock.advance(5 * 60 + 1)
    run(shop, "reconcile")

    row = order_row(order)
    assert (row.status, row.flag, row.close_reason) == ("closed", FLAG, "cancelled")
    assert row.transaction_id is not None and licenses() == 0
    assert closes(shop) == []


@pytest.mark.parametrize("tx, order, outcome", [
    ({**TX, "trade_state": "REFUND"}, FakeOrder(), "refunded"),
    ({**TX, "trade_state": "REFUND"}, FakeOrder(status="closed"), "refunded"),
    ({**TX, "trade_state": "REFUND"}, FakeOrder(flag="AMOUNT_MISMATCH"), "refunded"),
    ({**TX, "trade_state": "REFUND"}, FakeOrder(status="fulfilled", transaction_id="T1"), "duplicate"),
    ({**TX, "trade_state": "REFUND"}, FakeOrder(status="refunded", transaction_id="T1"), "duplicate"),
    ({**TX, "trade_state": "REFUND"}, FakeOrder(status="fulfilled", transaction_id="T0"), "second_payment"),
    ({**TX, "trade_state": "REFUND", "amount": {"total": 1}}, FakeOrder(), "wrong_amount"),
    ({**TX, "trade_state": "REFUND", "mchid": "X"}, FakeOrder(), "not_ours"),
    ({**TX, "trade_state": "REFUND"}, None, "unknown_order"),
    ({**TX, "trade_state": "CLOSED"}, FakeOrder(), "not_paid"),
])
def test_the_verdict_on_a_refunded_transaction(tx: dict[str, Any], order: Any, outcome: str) -> None:
    verdict = judge_payment(tx, order, "M", "A")
    assert verdict.outcome == outcome
    assert bool(verdict.reason) == (outcome in ("refunded", "not_ours", "wrong_amount", "second_payment"))
