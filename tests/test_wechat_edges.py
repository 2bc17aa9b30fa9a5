"""Issue 24, the WeChat Pay part: money that settles elsewhere and WeChat's remaining rules, over real HTTPS.

Refunds settled outside our request path (abnormal, made by hand in 商户平台), public-key-only
merchants, code_url issue times, non-transient Native errors, cancel before WeChat's 5 minutes,
the daily bill's rules, the sandbox's leftovers, and one out_trade_no per purchase attempt.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, Keys, Shop, Tls, live_config, start_shop
from test_admin import Console, console  # noqa: F401  (the console fixture)
from test_wechat_billing import (  # noqa: F401  (sandboxes: a fixture)
    CHINA,
    beijing_today,
    differences,
    make_sandbox,
    order_row,
    paid,
    sandboxes,
    shop_of,
    wait_until,
)

import models
from billing.refunds import request_refund
from operations.jobs import check_daily_bills
from operations.scheduler import holder_id, run_job

NATIVE = "/v3/pay/transactions/native"
REFUND_URL = "https://shop.test/wechatpay/notify/refund"  # as configured in 商户平台


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"ORDER_TTL_MINUTES": "180"}  # orders that outlive a code_url's 2 hours


def refunds_of(order: dict[str, Any]) -> list[models.Refund]:
    with models.db.connection_context():
        row = models.Order.get(models.Order.public_id == order["order_id"])
        return list(models.Refund.select().where(models.Refund.order == row.id).order_by(models.Refund.id))


def refund_in(console: Console, order: dict[str, Any], amount: str) -> models.Refund:
    answer = console.post(f"/admin/orders/{order['order_id']}/refund", {"amount": amount, "reason": "学员申请退款"})
    assert answer.status_code == 303, answer.text
    return refunds_of(order)[-1]


def refund_status(refund: models.Refund) -> str:
    with models.db.connection_context():
        return str(models.Refund.get_by_id(refund.id).status)


def run(shop: Shop, job: str) -> Any:
    with models.db.connection_context():
        return run_job(shop_of(shop), job, holder_id())


# --- 1. refunds settled anywhere ------------------------------------------------------------------


def test_an_abnormal_refund_is_asked_about_until_it_succeeds_and_then_takes_the_license_back(
        console: Console, clock: FakeClock) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    order = paid(shop)
    made = refund_in(console, order, "99.00")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(made) == "ABNORMAL")
    assert shop.poll(order)["license"]["state"] == "active"

    # The creator resolves it in 商户平台; its notification is lost. Only asking again finds it.
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "SUCCESS"})
    clock.advance(2 * 60)
    assert run(shop, "refunds.reconcile")["checked"] == 0, "an abnormal refund waits on the creator: every 10 min"
    clock.advance(9 * 60)
    summary = run(shop, "refunds.reconcile")

    assert summary["checked"] == 1 and summary["settled"] == 1, summary
    clock.advance(11 * 60)
    assert run(shop, "refunds.reconcile")["checked"] == 0, "a final refund is not asked about again"
    view = shop.poll(order)
    assert view["status"] == "refunded" and view["license"]["state"] == "revoked"
    with models.db.connection_context():
        row = models.Refund.get_by_id(made.id)
        at_wechat = shop.sandbox.control("GET", f"refunds/{made.out_refund_no}").json()
    assert row.status == "SUCCESS" and row.success_time == at_wechat["success_time"]


def test_the_console_applies_an_abnormal_refund_to_the_merchants_bank_card(console: Console) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    order, other_order = paid(shop), paid(shop)
    made = refund_in(console, order, "10.00")
    other = refund_in(console, other_order, "1.00")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(made) == "ABNORMAL")
    assert refund_status(other) == "PROCESSING", "only the refund WeChat named changes"
    shop.sandbox.control("POST", f"refunds/{other.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(other) == "ABNORMAL")
    page = console.page(f"/admin/orders/{order['order_id']}")
    assert "apply-abnormal" in page

    answer = console.post(f"/admin/refunds/{made.out_refund_no}/apply-abnormal", {"type": "MERCHANT_BANK_CARD"})

    assert answer.status_code == 303, answer.text
    assert refund_status(made) == "PROCESSING" and refund_status(other) == "ABNORMAL"
    assert shop.sandbox.control("GET", f"refunds/{made.out_refund_no}").json()["status"] == "PROCESSING"
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "SUCCESS"})
    assert wait_until(lambda: refund_status(made) == "SUCCESS")
    assert shop.poll(order)["status"] == "partially_refunded"
    with models.db.connection_context():
        actions = [e.action for e in models.AuditEvent.select().order_by(models.AuditEvent.id)]
    assert {"refund.abnormal", "refund.abnormal_applied", "refund.resumed", "refund.succeeded"} <= set(actions)
    # Only an abnormal refund can be applied: a second try is refused with a reason, WeChat not asked.
    asked = len([r for r in shop.sandbox.requests_log() if r["path"].endswith("/apply-abnormal-refund")])
    again = console.post(f"/admin/refunds/{made.out_refund_no}/apply-abnormal", {"type": "MERCHANT_BANK_CARD"})
    assert again.status_code == 409
    assert len([r for r in shop.sandbox.requests_log() if r["path"].endswith("/apply-abnormal-refund")]) == asked


def test_applying_a_refund_wechat_already_resolved_is_refused_with_a_reason_and_an_audit_event(
        console: Console) -> None:
    shop = console.shop
    shop.sandbox.config.refund_delay = None
    order = paid(shop)
    made = refund_in(console, order, "10.00")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(made) == "ABNORMAL")
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "SUCCESS"})  # in 商户平台

    answer = console.post(f"/admin/refunds/{made.out_refund_no}/apply-abnormal", {"type": "MERCHANT_BANK_CARD"})

    assert answer.status_code == 409 and "INVALID_REQUEST" in answer.text
    assert refund_status(made) == "ABNORMAL"  # unchanged until WeChat's word comes (the job asks)
    with models.db.connection_context():
        failed = [e for e in models.AuditEvent.select() if e.action == "wechat.call_failed"]
    assert len(failed) == 1 and "apply_abnormal_refund" in (failed[0].detail or "")


def test_a_refund_to_the_users_bank_card_sends_the_card_encrypted_and_never_keeps_it(shop: Shop) -> None:
    from billing.refunds import apply_abnormal_refund, request_refund

    shop.sandbox.config.refund_delay = None
    order = paid(shop)
    with models.db.connection_context():
        made = request_refund(shop_of(shop), order_row(order), amount_fen=500, reason="卡被冻结",
                              revoke_license=False, actor="admin:t")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(made) == "ABNORMAL")
    with models.db.connection_context():
        outcome = apply_abnormal_refund(shop_of(shop), made, kind="USER_BANK_CARD", actor="admin:t",
                                        bank_type="ICBC_DEBIT", bank_account="6222020000000000001",
                                        real_name="张三")
        kept = " ".join(e.detail or "" for e in models.AuditEvent.select())
    assert outcome == "processing" and refund_status(made) == "PROCESSING"
    assert "6222020000000000001" not in kept and "张三" not in kept


def test_lbpay_refunds_apply_abnormal_resolves_one_from_the_command_line(shop: Shop) -> None:
    from conftest import Lbpay

    shop.sandbox.config.refund_delay = None
    order = paid(shop)
    with models.db.connection_context():
        made = request_refund(shop_of(shop), order_row(order), amount_fen=500, reason="卡被冻结",
                              revoke_license=False, actor="admin:t")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "ABNORMAL"})
    assert wait_until(lambda: refund_status(made) == "ABNORMAL")
    lbpay = Lbpay(lambda: shop.app)

    unknown = lbpay("refunds", "apply-abnormal", "RFNOSUCHREFUND", "--type", "MERCHANT_BANK_CARD")
    done = lbpay("refunds", "apply-abnormal", made.out_refund_no, "--type", "MERCHANT_BANK_CARD")

    assert unknown.exit_code == 1 and "no refund RFNOSUCHREFUND" in unknown.output
    assert done.exit_code == 0 and f"{made.out_refund_no}: processing" in done.stdout.splitlines(), done.output
    assert refund_status(made) == "PROCESSING"


def test_a_refund_made_by_hand_in_the_merchant_platform_is_adopted_and_withdraws_the_license(
        shop: Shop) -> None:
    shop.sandbox.state.config.refund_notify_url = REFUND_URL
    order = paid(shop)
    made = shop.sandbox.control("POST", f"orders/{order['out_trade_no']}/refund", {"refund": 9900})
    assert made.status_code == 201, made.text

    view = shop.wait_for_status(order, "refunded")

    assert view["status"] == "refunded" and view["license"]["state"] == "revoked"
    [row] = refunds_of(order)
    assert (row.out_refund_no, row.amount_fen, row.status, row.actor) == (
        made.json()["out_refund_no"], 9900, "SUCCESS", "wechat")
    assert row.success_time is not None and row.settled_at is not None
    assert row.revoke_license is True, "all that was left, refunded: the same rule as our own full refund"
    with models.db.connection_context():
        actions = [e.action for e in models.AuditEvent.select()]
    assert "refund.adopted" in actions and "refund.unknown" not in actions


def test_a_partial_refund_made_by_hand_keeps_the_license_as_our_own_partial_refund_would(shop: Shop) -> None:
    shop.sandbox.state.config.refund_notify_url = REFUND_URL
    order = paid(shop)
    shop.sandbox.control("POST", f"orders/{order['out_trade_no']}/refund", {"refund": 1})  # the least: 1 fen
    view = shop.wait_for_status(order, "partially_refunded")
    assert view["status"] == "partially_refunded" and view["license"]["state"] == "active"
    [row] = refunds_of(order)
    assert (row.amount_fen, row.revoke_license) == (1, False)


@pytest.mark.parametrize("amount", [{"total": 9900, "refund": 9901, "payer_total": 9900, "payer_refund": 9901},
                                    {"total": 100, "refund": 100, "payer_total": 100, "payer_refund": 100}],
                         ids=["more than is left", "another order total"])
def test_a_refund_made_elsewhere_that_does_not_fit_the_order_flags_it_with_an_alert(
        shop: Shop, make_notification: Any, amount: dict[str, int]) -> None:
    from operations.alerts import look_for_trouble

    order = paid(shop)
    resource = {"mchid": "1230000109", "out_trade_no": order["out_trade_no"],
                "transaction_id": order["transaction_id"], "out_refund_no": "MPNOTOURS0001",
                "refund_id": "50300000000000000000000000001", "refund_status": "SUCCESS",
                "success_time": "2026-11-26T10:00:00+08:00", "amount": amount}
    note = make_notification(transaction=resource, event_type="REFUND.SUCCESS", associated_data="refund")
    answer = shop.session.post(shop.url + "/wechatpay/notify/refund", data=note.body, headers=note.headers,
                               timeout=15)
    assert answer.status_code == 204

    row = order_row(order)
    assert row.flag == "REFUND_UNMATCHED" and "MPNOTOURS0001" in (row.flag_detail or "")
    assert refunds_of(order) == []
    with models.db.connection_context():
        look_for_trouble(shop_of(shop), shop_of(shop).now())
        alerts = list(models.Alert.select().where(models.Alert.kind == "payment_flagged"))
    assert len(alerts) == 1 and "REFUND_UNMATCHED" in alerts[0].message


def keyed(shop: Shop, key: str, course_id: str = "cpp-primer-5th") -> Any:
    return shop.post("/api/v1/orders", {"course_id": course_id}, headers={"Idempotency-Key": key})


# --- 8. one purchase attempt, one out_trade_no ----------------------------------------------------


def test_a_keyed_retry_after_wechat_answered_500_sends_the_same_out_trade_no_and_time_expire(
        shop: Shop, clock: FakeClock) -> None:
    # WeChat makes the order, then answers 500 (each of the client's three tries).
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 3, "status": 500, "code": "SYSTEM_ERROR",
                                                    "after_effect": True, "paths": NATIVE}})
    key = "attempt-" + uuid.uuid4().hex
    first = keyed(shop, key)
    assert first.status_code == 503 and first.json()["error"]["code"] == "wechat_unavailable", first.text

    clock.advance(40)  # the learner presses "buy" again a little later, with the same key
    again = keyed(shop, key)

    assert again.status_code == 201, again.text
    at_wechat = shop.sandbox.control("GET", "orders").json()["orders"]
    assert [o["out_trade_no"] for o in at_wechat] == [again.json()["out_trade_no"]]
    natives = [r["status"] for r in shop.sandbox.requests_log() if r["path"] == NATIVE]
    assert natives == [500, 500, 500, 200]  # the same parameters every time: WeChat never says INVALID_REQUEST
    with models.db.connection_context():
        assert models.Order.select().count() == 1
        assert models.OrderAttempt.select().count() == 0  # the attempt goes with the order's creation
    assert keyed(shop, key).json()["order_id"] == again.json()["order_id"]


def test_an_attempt_past_its_time_expire_is_not_sent_again_and_is_forgotten(shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_for": 3600, "status": 500, "code": "SYSTEM_ERROR",
                                                    "paths": NATIVE}})
    old_key, new_key, abandoned = ("attempt-" + uuid.uuid4().hex for _ in range(3))
    assert keyed(shop, old_key).status_code == 503
    with models.db.connection_context():
        [stale] = models.OrderAttempt.select()
    assert keyed(shop, abandoned).status_code == 503  # never retried: forgotten with the next failure
    clock.advance(181 * 60)  # past the attempt's time_expire (orders live 180 minutes here)
    assert keyed(shop, new_key).status_code == 503
    assert keyed(shop, old_key).status_code == 503  # a fresh attempt: the stale one cannot be paid any more
    with models.db.connection_context():
        kept = {a.idempotency_key: a.out_trade_no for a in models.OrderAttempt.select()}
    assert len(kept) == 2 and stale.out_trade_no not in kept.values()


def test_an_unconfirmed_attempt_is_not_someone_elses_to_replay(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 3, "status": 500, "code": "SYSTEM_ERROR",
                                                    "paths": NATIVE}})
    key = "attempt-" + uuid.uuid4().hex
    assert keyed(shop, key).status_code == 503
    # The same key for another course is another request: refused, not a second order under the attempt's number.
    other = keyed(shop, key, "rust-monthly")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    with models.db.connection_context():
        assert models.Order.select().count() == 0


# --- 2. public-key-only merchants -----------------------------------------------------------------


def test_verify_defaults_to_public_key_when_only_the_public_key_is_given_and_both_stays_explicit(
        tmp_path: Path, keys: Keys) -> None:
    from settings import load_config

    given = live_config(tmp_path, keys, "https://127.0.0.1:9")
    assert load_config(given, str(tmp_path)).wechat.verify == "public_key"
    assert load_config({**given, "WECHATPAY_VERIFY": "both"}, str(tmp_path)).wechat.verify == "both"
    without = {k: v for k, v in given.items() if not k.startswith("WECHATPAY_PUBLIC_KEY")}
    assert load_config(without, str(tmp_path)).wechat.verify == "certificate"


def test_a_merchant_without_certificates_verifies_by_public_key_and_the_12_hour_job_asks_nothing(
        tmp_path: Path, keys: Keys, tls: Tls, clock: FakeClock, sandboxes: list[Any]) -> None:
    sandbox = make_sandbox(keys, tls, sandboxes, certificates=False)
    assert sandbox.control("GET", "keys").json()["certificate_serials"] == []
    shop = start_shop(tmp_path, keys, sandbox, clock)
    try:
        summary = run(shop, "wechat_certificates")
        order = paid(shop)
    finally:
        shop.server.stop()
    assert summary == {}
    assert order["status"] == "fulfilled"
    assert "/v3/certificates" not in [r["path"] for r in sandbox.requests_log()]


def test_in_both_mode_no_certificates_at_wechat_is_an_answer_not_a_failing_job(
        tmp_path: Path, keys: Keys, tls: Tls, clock: FakeClock, sandboxes: list[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    sandbox = make_sandbox(keys, tls, sandboxes, certificates=False)
    shop = start_shop(tmp_path, keys, sandbox, clock, WECHATPAY_VERIFY="both")
    try:
        with caplog.at_level(logging.WARNING):
            summary = run(shop, "wechat_certificates")
        order = paid(shop)
    finally:
        shop.server.stop()
    assert summary == {"certificates": 0, "serials": [], "state": "no_certificates"}
    assert not [r for r in caplog.records if r.exc_info], "no traceback for an answer WeChat gives every new merchant"
    assert order["status"] == "fulfilled"
    [asked] = [r for r in sandbox.requests_log() if r["path"] == "/v3/certificates"]
    assert (asked["status"], asked["code"]) == (404, "RESOURCE_NOT_EXISTS")


# --- 3. a code_url WeChat gives back unchanged keeps its issue time ----------------------------------


def native_calls(shop: Shop) -> int:
    return len([r for r in shop.sandbox.requests_log() if r["path"] == NATIVE])


def test_a_code_url_given_back_unchanged_keeps_its_issue_time_and_is_asked_for_again_at_120_minutes(
        shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.control("POST", "settings", {"code_url_reuse": True})
    order = shop.order()
    issued = order_row(order).code_url_at

    clock.advance(101 * 60)  # near its 2 hours by our clock; WeChat (the sandbox's own clock) gives it back
    view = shop.poll(order)
    assert view["code_url"] == order["code_url"] and native_calls(shop) == 2
    assert order_row(order).code_url_at == issued, "the same URL dies 2 hours after it was first issued"

    clock.advance(60)
    shop.poll(order)
    assert native_calls(shop) == 2, "not asked again on every poll"

    clock.advance(19 * 60)  # 121 minutes after issue: the URL is dead whatever WeChat said at 101
    shop.sandbox.control("POST", "settings", {"code_url_reuse": False})
    view = shop.poll(order)
    assert native_calls(shop) == 3 and view["code_url"] != order["code_url"]
    row = order_row(order)
    assert row.code_url_at > issued + dt.timedelta(minutes=120) and row.code_url_retry_at is None


# --- 4. non-transient Native errors ----------------------------------------------------------------


def alerts_of(kind: str) -> list[models.Alert]:
    with models.db.connection_context():
        return list(models.Alert.select().where(models.Alert.kind == kind))


def test_trade_error_tells_the_learner_plainly_with_no_retry_hint_and_alerts_once(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 2, "status": 403, "code": "TRADE_ERROR",
                                                    "message": "交易错误，请查看详细信息", "paths": NATIVE}})
    first = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"})
    second = shop.post("/api/v1/orders", {"course_id": "rust-monthly"})

    for answer in (first, second):
        error = answer.json()["error"]
        assert error["code"] == "shop_setup_error" and error["action"] == "contact_support", answer.text
        assert "Retry-After" not in answer.headers and "try again shortly" not in error["message_en"]
    [alert] = alerts_of("wechat_config")
    assert "TRADE_ERROR" in alert.message
    natives = [r for r in shop.sandbox.requests_log() if r["path"] == NATIVE]
    assert len(natives) == 2, "a refusal is not retried"


def test_an_unknown_403_of_native_ordering_is_not_called_an_outage_either(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 403, "code": "SOMETHING_NEW",
                                                    "paths": NATIVE}})
    answer = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"})
    assert answer.json()["error"]["code"] == "shop_setup_error" and "Retry-After" not in answer.headers
    assert len(alerts_of("wechat_config")) == 1


# --- 7. the sandbox's leftovers, and what our side makes of the v3 answers ---------------------------


def test_placing_a_paid_order_again_asks_wechat_before_believing_its_refusal(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    key = "legacy-" + uuid.uuid4().hex
    order = keyed(shop, key).json()
    shop.sandbox.pay(order["out_trade_no"])
    with models.db.connection_context():  # an order written before WeChat answered (older releases)
        models.Order.update(code_url=None).where(models.Order.public_id == order["order_id"]).execute()

    again = keyed(shop, key)

    # WeChat refuses the number (INVALID_REQUEST, never the v2 ORDERPAID): the query says it was paid.
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "fulfilled"
    refused = [r for r in shop.sandbox.requests_log() if r["path"] == NATIVE][-1]
    assert (refused["status"], refused["code"]) == (400, "INVALID_REQUEST")


# --- 5. cancel here at once, close at WeChat no sooner than 5 minutes after creation ------------------


def closes(shop: Shop) -> list[dict[str, Any]]:
    return [r for r in shop.sandbox.requests_log() if r["path"].endswith("/close")]


def test_a_cancel_within_five_minutes_closes_here_at_once_and_at_wechat_by_the_job_later(
        shop: Shop, clock: FakeClock) -> None:
    order = shop.order()
    clock.advance(30)
    answer = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "closed" and answer.json()["error"]["code"] == "payment_cancelled"
    assert closes(shop) == [], "WeChat advises closing no sooner than 5 minutes after creation"
    assert order_row(order).wechat_closed_at is None

    clock.advance(60)
    run(shop, "reconcile")
    assert closes(shop) == []
    clock.advance(4 * 60)  # 5.5 minutes after creation
    run(shop, "reconcile")
    run(shop, "reconcile")

    assert len(closes(shop)) == 1 and closes(shop)[0]["status"] == 204
    at_wechat = shop.sandbox.control("GET", f"orders/{order['out_trade_no']}").json()
    assert at_wechat["trade_state"] == "CLOSED"
    assert order_row(order).wechat_closed_at is not None


def test_a_cancel_after_five_minutes_closes_at_wechat_at_once(shop: Shop, clock: FakeClock) -> None:
    order = shop.order()
    clock.advance(6 * 60)
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200
    assert len(closes(shop)) == 1 and order_row(order).wechat_closed_at is not None


def test_a_payment_after_the_cancel_and_before_the_close_is_still_flagged(shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    order = shop.order()
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200
    shop.sandbox.pay(order["out_trade_no"])  # the QR is still open at WeChat: the learner pays anyway

    clock.advance(5 * 60 + 1)
    run(shop, "reconcile")

    row = order_row(order)
    assert (row.status, row.flag, row.close_reason) == ("closed", "LATE_PAYMENT", "cancelled")
    assert closes(shop) == [], "a paid order is not closed; the creator refunds it"


# --- 6. the daily bill's rules ---------------------------------------------------------------------


def noon_after(day: dt.date, days: int = 1) -> dt.datetime:
    """Noon Beijing time ``days`` after ``day``: well after WeChat publishes that day's bill."""
    return dt.datetime.combine(day + dt.timedelta(days=days), dt.time(12), CHINA).astimezone(dt.timezone.utc)


def bill_checked(day: dt.date) -> bool:
    with models.db.connection_context():
        return models.BillCheck.get_or_none(models.BillCheck.bill_date == day) is not None


def check(shop: Shop, day: dt.date, now: dt.datetime) -> dict[str, Any]:
    with models.db.connection_context():
        return check_daily_bills(shop_of(shop), now, days=[day])


def test_no_bill_after_ten_for_a_day_with_our_payments_is_not_ready_not_empty_for_good(shop: Shop) -> None:
    shop.sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    paid(shop)
    today = beijing_today()
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 400, "code": "NO_STATEMENT_EXIST",
                                                    "message": "请求的账单文件不存在",
                                                    "paths": "/v3/bill/tradebill"}})

    first = check(shop, today, noon_after(today))
    assert first["not_ready"] == [today.isoformat()] and first["checked"] == []
    assert not bill_checked(today) and differences() == []

    again = check(shop, today, noon_after(today))  # WeChat has the bill now
    assert again["checked"] == [today.isoformat()] and again["differences"] == 0 and bill_checked(today)


def test_a_day_whose_bill_never_comes_is_compared_with_nothing_after_a_day_and_says_so(shop: Shop) -> None:
    order = paid(shop)
    today = beijing_today()
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 400, "code": "NO_STATEMENT_EXIST",
                                                    "paths": "/v3/bill/tradebill"}})
    late = check(shop, today, noon_after(today, days=2))
    assert late["checked"] == [today.isoformat()]
    assert differences() == [("unknown_to_wechat", order["out_trade_no"], None)]


def test_refunds_are_dated_by_wechats_success_time_not_by_when_we_learned_of_them(
        shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.config.refund_delay = None
    shop.sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    order = paid(shop)
    today = beijing_today()
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    clock.advance(-86400)  # we ask, and learn of the refund, on what our clock calls yesterday
    with models.db.connection_context():
        made = request_refund(shop_of(shop), order_row(order), amount_fen=500, reason="对账测试",
                              revoke_license=False, actor="admin:t")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "SUCCESS"})  # WeChat: today
    clock.advance(120)
    run(shop, "refunds.reconcile")
    clock.advance(86400 - 120)
    with models.db.connection_context():
        row = models.Refund.get_by_id(made.id)
    assert row.status == "SUCCESS" and row.settled_at.astimezone(CHINA).date() == today - dt.timedelta(days=1)

    summary = check(shop, today - dt.timedelta(days=1), noon_after(today))
    summary_today = check(shop, today, noon_after(today))

    assert summary["differences"] == 0 and summary_today["differences"] == 0
    assert differences() == []


def test_a_refund_still_processing_here_but_successful_in_the_bill_is_settled_not_kept_as_a_difference(
        shop: Shop) -> None:
    shop.sandbox.config.refund_delay = None
    shop.sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    order = paid(shop)
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    with models.db.connection_context():
        made = request_refund(shop_of(shop), order_row(order), amount_fen=9900, reason="对账测试",
                              revoke_license=False, actor="admin:t")
    shop.sandbox.control("POST", f"refunds/{made.out_refund_no}/settle", {"status": "SUCCESS"})
    assert refund_status(made) == "PROCESSING"

    summary = check(shop, beijing_today(), noon_after(beijing_today()))

    assert summary["differences"] == 0 and differences() == []
    assert refund_status(made) == "SUCCESS" and shop.poll(order)["status"] == "refunded"


def test_a_refund_in_the_bill_we_never_issued_for_our_order_is_adopted(shop: Shop) -> None:
    shop.sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    order = paid(shop)
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})  # its notification is lost
    made = shop.sandbox.control("POST", f"orders/{order['out_trade_no']}/refund", {"refund": 9900}).json()
    assert wait_until(lambda: shop.sandbox.control("GET", f"refunds/{made['out_refund_no']}").json()["status"]
                      == "SUCCESS")

    summary = check(shop, beijing_today(), noon_after(beijing_today()))

    assert summary["differences"] == 0 and differences() == []
    [row] = refunds_of(order)
    assert (row.out_refund_no, row.status) == (made["out_refund_no"], "SUCCESS")
    assert shop.poll(order)["license"]["state"] == "revoked"


def test_an_unreadable_line_is_a_difference_of_its_own_and_the_rest_of_the_day_is_compared(shop: Shop) -> None:
    sandbox = shop.sandbox
    sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    a = paid(shop)
    odd = sandbox.control("POST", "bills/plants", {"kind": "unknown_payment", "total": 100,
                                                   "description": "课程,`第二部分"})
    huge = sandbox.control("POST", "bills/plants", {"kind": "unknown_payment", "total": 10 ** 21})
    assert odd.status_code == huge.status_code == 201, (odd.text, huge.text)
    sandbox.control("POST", "bills/plants", {"kind": "amount", "out_trade_no": a["out_trade_no"], "total": 100})

    summary = check(shop, beijing_today(), noon_after(beijing_today()))

    assert summary["checked"] == [beijing_today().isoformat()], summary
    with models.db.connection_context():
        details = [d.detail for d in models.BillDifference.select().where(
            models.BillDifference.kind == "unreadable_line")]
    assert [d for d in differences() if d[0] != "unreadable_line"] == [("amount_differs", a["out_trade_no"], None)]
    # The line with ",`" in a field, the line of 10^21 fen, and the summary that adds it up.
    assert len(details) == 3, details
    assert any("fields" in d for d in details) and any("beyond any real amount" in d for d in details), details
