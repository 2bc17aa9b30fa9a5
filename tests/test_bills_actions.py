"""Each bill difference has the action that settles it: a paid order WeChat confirms gets its license through
billing's normal path, a refund WeChat made is recorded by the one refund path; every refusal is a 4xx with a
reason in words and an audit event, and leaves the difference open."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

import pytest
from conftest import Shop
from test_admin import EMAIL, Console, console, paid_order  # noqa: F401 (the console fixture)

import models
from billing import daily_bill

DAY = dt.date(2026, 12, 3)


def plant(shop: Shop, kind: str, out_trade_no: str | None, **facts: Any) -> int:
    """A kept difference, as a bill check records it."""
    with models.db.connection_context():
        difference = daily_bill.Difference(kind, "planted by the test", out_trade_no=out_trade_no, **facts)
        daily_bill.record(DAY, [difference], shop.clock(), lines=1)
        return int(models.BillDifference.get(models.BillDifference.key == difference.key(DAY)).id)


def row(difference_id: int) -> models.BillDifference:
    with models.db.connection_context():
        return models.BillDifference.get_by_id(difference_id)


def events(action: str) -> list[dict[str, Any]]:
    import json

    with models.db.connection_context():
        return [json.loads(e.detail or "{}") for e in models.AuditEvent.select()
                .where(models.AuditEvent.action == action).order_by(models.AuditEvent.id)]


def eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, "the sandbox never got there"
        time.sleep(0.05)


def test_a_paid_order_whose_notification_was_lost_gets_its_license_from_the_bills_page(console: Console) -> None:
    shop = console.shop
    order = shop.order()
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})  # WeChat's notification is lost
    shop.sandbox.pay(order["out_trade_no"])
    ident = plant(shop, "paid_not_licensed", order["out_trade_no"], wechat_fen=9900)

    page = console.page("/admin/bills")
    assert f'id="issue-license-{ident}"' in page and "Ask WeChat, then issue the license" in page
    assert f'href="/admin/bills#difference-{ident}"' in console.page("/admin/alerts")  # the alerts page leads there
    done = console.post(f"/admin/bills/differences/{ident}/issue-license")
    assert done.status_code == 303 and done.headers["Location"].endswith(f"/admin/bills#difference-{ident}")
    with models.db.connection_context():
        placed = models.Order.get(models.Order.public_id == order["order_id"])
        assert placed.status == "fulfilled" and placed.transaction_id
        assert models.License.get_or_none(models.License.order == placed.id) is not None
    settled = row(ident)
    assert settled.resolved_at is not None and settled.resolved_by == "admin:" + EMAIL
    assert "the license is issued" in settled.resolution
    [event] = events("bill_difference.license_issued")
    assert event["difference"] == ident and event["transaction_id"] == placed.transaction_id
    assert events("order.paid")[-1]["source"] == "bill"  # billing's normal path, told it was the bill
    assert "WeChat confirmed the payment; the license is issued." in console.page("/admin/bills")

    # Settled once: asking again is refused, says why, and leaves an event.
    again = console.post(f"/admin/bills/differences/{ident}/issue-license")
    assert again.status_code == 409 and 'id="action-problem"' in again.text and "settled already" in again.text
    assert events("bill_difference.refused")[-1]["reason"] == "already_settled"


@pytest.mark.parametrize("case", ["unpaid", "not_ours", "wrong_kind", "missing", "wechat_down"])
def test_an_action_that_cannot_settle_is_refused_with_a_reason_and_an_event(console: Console, case: str) -> None:
    shop = console.shop
    if case == "unpaid":
        ident, status, reason = plant(shop, "paid_not_licensed", shop.order()["out_trade_no"]), 409, "not_paid_at_wechat"
    elif case == "not_ours":
        ident, status, reason = plant(shop, "paid_not_licensed", "LB20261203NOTOURS", wechat_fen=100), 409, "not_our_order"
    elif case == "wrong_kind":
        order = paid_order(shop)
        ident = plant(shop, "amount_differs", order["out_trade_no"], wechat_fen=1, ours_fen=9900)
        status, reason = 409, "wrong_kind"
    elif case == "missing":
        ident, status, reason = 987654, 404, "not_found"
    else:
        ident, status, reason = plant(shop, "paid_not_licensed", shop.order()["out_trade_no"]), 503, "wechat_unavailable"
        shop.sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 400, "code": "INVALID_REQUEST"}})
    answer = console.post(f"/admin/bills/differences/{ident}/issue-license")
    assert answer.status_code == status, answer.text[:300]
    assert 'id="action-problem"' in answer.text and f'data-reason="{reason}"' in answer.text
    [event] = events("bill_difference.refused")
    assert (event["difference"], event["reason"], event["action"]) == (ident, reason, "license_issued")
    if case != "missing":
        assert row(ident).resolved_at is None  # nothing half done: the difference stays open
    with models.db.connection_context():
        assert models.License.select().where(models.License.order.in_(
            models.Order.select(models.Order.id).where(models.Order.status == "pending"))).count() == 0


def test_a_refund_made_in_the_merchant_platform_is_recorded_from_the_bills_page(console: Console) -> None:
    shop = console.shop
    order = paid_order(shop)
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})  # its notification is lost
    made = shop.sandbox.control("POST", f"orders/{order['out_trade_no']}/refund", {"refund": 9900}).json()
    number = made["out_refund_no"]
    eventually(lambda: shop.sandbox.control("GET", f"refunds/{number}").json()["status"] == "SUCCESS")
    ident = plant(shop, "refund_missing_here", order["out_trade_no"], out_refund_no=number, wechat_fen=9900)
    other = plant(shop, "paid_not_licensed", order["out_trade_no"], wechat_fen=9900)

    # The wrong action for the kind is refused; the right one is offered.
    wrong = console.post(f"/admin/bills/differences/{ident}/issue-license")
    assert wrong.status_code == 409 and 'data-reason="wrong_kind"' in wrong.text
    page = console.page("/admin/bills")
    assert f'id="adopt-refund-{ident}"' in page and f'id="adopt-refund-{other}"' not in page

    done = console.post(f"/admin/bills/differences/{ident}/adopt-refund")
    assert done.status_code == 303, done.text[:300]
    with models.db.connection_context():
        placed = models.Order.get(models.Order.public_id == order["order_id"])
        refund = models.Refund.get(models.Refund.out_refund_no == number)
        assert (placed.status, refund.status, refund.amount_fen) == ("refunded", "SUCCESS", 9900)
        assert models.License.get(models.License.order == placed.id).revoked_at is not None
    assert row(ident).resolved_at is not None
    [event] = events("bill_difference.refund_adopted")
    assert (event["out_refund_no"], event["amount_fen"]) == (number, 9900)
    # The license difference of the same order: its license exists, so it is settled without asking WeChat.
    assert console.post(f"/admin/bills/differences/{other}/issue-license").status_code == 303
    assert events("bill_difference.license_issued")[-1]["result"] == "already_licensed"
