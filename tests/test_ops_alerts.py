"""Alerts to the creator: each kind raised once per thing, mailed at most once per kind per hour."""

from __future__ import annotations

import re
import time

from typing import Any

import pytest
from conftest import FakeClock, Shop

import models
from operations.alerts import look_for_trouble, recent_alerts

CREATOR = "creator@example.com"


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"ALERT_EMAIL": CREATOR}


def run_checks(shop: Shop) -> dict[str, Any]:
    core = shop.app.extensions["lbpay.shop"]
    with models.db.connection_context():
        return look_for_trouble(core, core.now())


def alert_mails() -> list[Any]:
    with models.db.connection_context():
        return list(models.MailOutbox.select().where(models.MailOutbox.kind == "alert"))


def test_a_flagged_payment_is_mailed_once_and_later_ones_wait_an_hour(shop: Shop, make_notification,
                                                                      clock: FakeClock) -> None:
    first, second, third = shop.order(), shop.order(), shop.order()
    assert shop.notify(make_notification(first, amount={"total": 1, "currency": "CNY"})).status_code == 204
    assert run_checks(shop) == {"raised": 1}
    assert run_checks(shop) == {"raised": 0}  # the same flagged order is not raised twice
    mails = alert_mails()
    assert len(mails) == 1 and mails[0].to == CREATOR and first["order_id"] in mails[0].text

    assert shop.notify(make_notification(second, amount={"total": 2, "currency": "CNY"})).status_code == 204
    assert run_checks(shop) == {"raised": 1}
    assert len(alert_mails()) == 1  # listed, not mailed: one mail per kind per hour

    clock.advance(61 * 60)
    assert shop.notify(make_notification(third, amount={"total": 3, "currency": "CNY"})).status_code == 204
    assert run_checks(shop) == {"raised": 1}
    assert len(alert_mails()) == 2
    with models.db.connection_context():
        listed = [(a.kind, a.mailed) for a in recent_alerts()]
    assert listed == [("payment_flagged", True), ("payment_flagged", False), ("payment_flagged", True)]


def test_notifications_failing_verification_raise_an_alert(shop: Shop, make_notification) -> None:
    order = shop.order()
    for _ in range(3):
        assert shop.notify(make_notification(order, signing_key=shop.keys.forger)).status_code == 401
    run_checks(shop)
    with models.db.connection_context():
        kinds = [a.kind for a in recent_alerts()]
    assert kinds == ["notify_failing"]
    assert "APIV3_KEY" in alert_mails()[0].text


def test_wechat_unreachable_for_ten_minutes_raises_an_alert(shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 100, "status": 500, "code": "SYSTEM_ERROR"}})
    assert shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"}).status_code == 503
    assert run_checks(shop) == {"raised": 0}  # not yet ten minutes
    clock.advance(11 * 60)
    assert run_checks(shop) == {"raised": 1}
    shop.sandbox.control("DELETE", "faults")
    shop.order()  # WeChat answers again
    assert run_checks(shop) == {"raised": 0}  # the job writes the calls it has not written yet
    with models.db.connection_context():
        assert models.OutsideService.get_by_id("wechat").failing_since is None
        assert [a.kind for a in recent_alerts()] == ["wechat_unreachable"]


def test_a_paid_order_without_a_license_after_five_minutes_raises_an_alert(shop: Shop, clock: FakeClock) -> None:
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    shop.wait_for_status(order, "fulfilled")
    with models.db.connection_context():
        models.License.delete().execute()  # as if issuing had been lost
    assert run_checks(shop) == {"raised": 0}
    clock.advance(6 * 60)
    assert run_checks(shop) == {"raised": 1}
    with models.db.connection_context():
        assert [a.kind for a in recent_alerts()] == ["paid_unlicensed"]


def test_a_clock_that_drifts_from_wechats_raises_an_alert(shop: Shop) -> None:
    """THREATS #40: WeChat's Date header says our clock is off by more than a minute (it refuses 300 s)."""
    shop.order()
    assert run_checks(shop) == {"raised": 0}  # in step with WeChat
    shop.sandbox.config.clock = lambda: time.time() - 120  # WeChat's clock, as its Date header tells it
    shop.order()  # our signatures are still accepted 120 s off; the Date header shows the drift
    assert run_checks(shop) == {"raised": 1}
    with models.db.connection_context():
        alerts = recent_alerts()
    assert [a.kind for a in alerts] == ["clock_skew"]
    # 120 s, plus how long the answer took to reach us (the Date header has whole seconds): up to +129 s.
    assert re.search(r"\+1(19|2[0-9]) s off", alerts[0].message), alerts[0].message
