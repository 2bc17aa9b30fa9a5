"""Issue 10 above the protocol library: our app in live mode against the sandbox over real HTTPS.

Byte-exact fields and config errors, both keys through the gray phase, certificates kept fresh,
current QR codes, closing without ORDERPAID, configuration problems in /readyz and /metrics, and
the daily trade bill compared with our ledger.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from conftest import (
    PUBLIC_KEY_ID,
    FakeClock,
    Keys,
    LiveServer,
    Sandbox,
    Shop,
    Tls,
    live_config,
    serve_sandbox,
    start_shop,
)
from servers import private_pem

import models
from billing import BillingError
from billing.courses import save_course
from billing.orders import qr_svg
from billing.refunds import request_refund
from operations.alerts import look_for_trouble
from operations.jobs import check_daily_bills
from operations.scheduler import holder_id, run_job

CHINA = dt.timezone(dt.timedelta(hours=8))
ROOT = Path(__file__).resolve().parent.parent


def shop_of(shop: Shop) -> Any:
    return shop.app.extensions["lbpay.shop"]


def wait_until(condition: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def paid(shop: Shop, course_id: str = "cpp-primer-5th") -> dict[str, Any]:
    order = shop.order(course_id)
    shop.sandbox.pay(order["out_trade_no"])
    view = shop.wait_for_status(order, "fulfilled")
    assert view["status"] == "fulfilled", view
    return {**order, **view}


def order_row(order: dict[str, Any]) -> models.Order:
    with models.db.connection_context():
        return models.Order.get(models.Order.public_id == order["order_id"])


def api_paths(sandbox: Sandbox) -> list[str]:
    return [r["path"] for r in sandbox.requests_log()]


def alerts_of(kind: str) -> list[models.Alert]:
    with models.db.connection_context():
        return list(models.Alert.select().where(models.Alert.kind == kind))


def make_sandbox(keys: Keys, tls: Tls, started: list[tuple[Sandbox, LiveServer]], **overrides: Any) -> Sandbox:
    """A sandbox with its own certificate key (distinct from the public key's, as at WeChat)."""
    sandbox = serve_sandbox(keys, tls, **{"certificate_private_key_pem": private_pem(keys.forger),
                                          "retry_scale": 0.01, **overrides})
    started.append((sandbox, sandbox.server))
    return sandbox


@pytest.fixture
def sandboxes() -> Iterator[list[tuple[Sandbox, LiveServer]]]:
    started: list[tuple[Sandbox, LiveServer]] = []
    yield started
    for sandbox, server in started:
        sandbox.state.stop()
        server.stop()


# --- 1. byte-exact fields -----------------------------------------------------------------------


def test_a_course_titled_with_60_chinese_characters_and_an_emoji_is_bought_end_to_end(shop: Shop) -> None:
    title = "深入理解计算机系统" * 6 + "学习伙伴课程" + "🚀"
    assert len(title) == 61 and len(title.encode()) == 184
    with models.db.connection_context():
        save_course(shop_of(shop), course_id="long-title", title=title, price_fen=1990)

    order = paid(shop, "long-title")

    sent = shop.sandbox.control("GET", f"orders/{order['out_trade_no']}").json()["description"]
    assert len(sent.encode()) <= 127 and title.startswith(sent) and len(sent) == 42
    assert order["license"]["plan"] == "one_time"
    page = shop.get("/")
    assert title in page.text  # our pages keep the whole title
    # The sandbox's side of it (a 128-byte description is refused: 400 PARAM_ERROR, as WeChat does) is
    # tests/test_sandbox.py::test_a_description_over_127_bytes_is_refused_counting_bytes_as_wechat_does and the "a" * 128 case of its table of refusals.


def test_a_param_error_tells_the_learner_the_shop_must_fix_something_and_alerts_once(
        shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 2, "status": 400, "code": "PARAM_ERROR",
                                                    "message": "字节数 144,大于最大值 127",
                                                    "paths": "/v3/pay/transactions/native"}})

    first = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"})
    second = shop.post("/api/v1/orders", {"course_id": "rust-monthly"})

    for answer in (first, second):
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "shop_setup_error" and error["action"] == "contact_support"
        assert "Retry-After" not in answer.headers
    assert len(alerts_of("wechat_config")) == 1
    assert "PARAM_ERROR" in alerts_of("wechat_config")[0].message
    clock.advance(11 * 60)
    with models.db.connection_context():
        look_for_trouble(shop_of(shop), shop_of(shop).now())
        service = models.OutsideService.get_or_none(models.OutsideService.name == "wechat")
    assert alerts_of("wechat_unreachable") == []
    assert service is not None and service.failing_since is None


def test_a_refund_reason_is_checked_in_bytes_before_anything_is_sent(shop: Shop) -> None:
    order = paid(shop)
    row = order_row(order)
    before = len(shop.sandbox.requests_log())

    refusals = {}
    for reason in ("退" * 27, "学员申请退款😀"):
        with models.db.connection_context(), pytest.raises(BillingError) as refused:
            request_refund(shop_of(shop), row, amount_fen=100, reason=reason, revoke_license=False, actor="admin:t")
        refusals[refused.value.extra["rule"]] = refused.value
    with models.db.connection_context():
        accepted = request_refund(shop_of(shop), row, amount_fen=100, reason="退" * 26, revoke_license=False,
                                  actor="admin:t")

    assert set(refusals) == {"too_long", "unsupported_character"}
    too_long = refusals["too_long"]
    assert too_long.code == "bad_request" and too_long.extra["field"] == "reason"
    assert "81 bytes" in too_long.detail and "80" in too_long.detail
    sent = shop.sandbox.requests_log()[before:]
    assert [r["path"] for r in sent] == ["/v3/refund/domestic/refunds"]  # only the 78-byte one
    assert accepted.reason == "退" * 26


# --- 2. both keys through the gray phase ----------------------------------------------------------


def test_the_gray_phase_with_both_keys_then_public_key_only_after_the_switch(
        tmp_path: Path, keys: Keys, tls: Tls, clock: FakeClock, sandboxes: list[Any]) -> None:
    sandbox = make_sandbox(keys, tls, sandboxes, key_phase="gray")
    (tmp_path / "both").mkdir()
    (tmp_path / "public").mkdir()
    # A merchant moving from certificates to the public key chooses VERIFY=both. One proxy hop, so that
    # the 21 orders below come from 21 learners, each from an address of their own (orders are limited
    # per address).
    shop = start_shop(tmp_path / "both", keys, sandbox, clock, PROXY_HOPS="1", WECHATPAY_VERIFY="both")
    learners = itertools.count(1)

    def next_learner() -> Shop:
        shop.session.headers["X-Forwarded-For"] = f"198.51.100.{next(learners)}"
        return shop

    try:
        verifier = shop_of(shop).verifier
        assert verifier.mode == "both"
        orders = [paid(next_learner()) for _ in range(10)]
        shop.poll(orders[0])
        cancelled = next_learner().order("rust-monthly")
        assert shop.post(f"/api/v1/orders/{cancelled['order_id']}/cancel",
                         token=cancelled["order_token"]).status_code == 200
        with models.db.connection_context():
            refund = request_refund(shop_of(shop), order_row(orders[1]), amount_fen=100, reason="灰度期退款",
                                    revoke_license=False, actor="admin:t")
        assert refund.status in ("PROCESSING", "SUCCESS")

        sandbox.control("POST", "keys", {"switch": True})
        orders += [paid(next_learner()) for _ in range(10)]
        shop.poll(orders[-1])
    finally:
        shop.server.stop()

    with models.db.connection_context():
        notes = list(models.Notification.select().where(models.Notification.kind == "transaction"))
    assert len(notes) == 20 and {n.result for n in notes} == {"fulfilled"}
    serials = {d["serial"] for d in sandbox.deliveries() if d["event_type"] == "TRANSACTION.SUCCESS" and d["ok"]}
    certificate_serial = sandbox.state.identity.certificate_serial
    assert serials == {PUBLIC_KEY_ID, certificate_serial}
    assert verifier.certificates.serials() == [certificate_serial]

    after = start_shop(tmp_path / "public", keys, sandbox, clock, WECHATPAY_VERIFY="public_key")
    try:
        sandbox.control("DELETE", "log")
        paid(after)
        assert shop_of(after).verifier.certificates is None
        assert "/v3/certificates" not in api_paths(sandbox)
    finally:
        after.server.stop()


# --- 3. certificates kept fresh -----------------------------------------------------------------


def test_the_12_hour_job_refreshes_the_certificate_store_and_a_new_certificate_is_accepted_at_once(
        tmp_path: Path, keys: Keys, tls: Tls, clock: FakeClock, sandboxes: list[Any]) -> None:
    sandbox = make_sandbox(keys, tls, sandboxes, key_phase="certificate", public_key_id=None)
    settings = {"WECHATPAY_PUBLIC_KEY_FILE": None, "WECHATPAY_PUBLIC_KEY_ID": None}
    shop = start_shop(tmp_path, keys, sandbox, clock, **settings)
    try:
        lbpay = shop_of(shop)
        from operations.jobs import job_table

        job = job_table(lbpay)["wechat_certificates"]
        assert job.interval == 12 * 3600
        with models.db.connection_context():
            first = run_job(lbpay, job, holder_id())
            sandbox.control("POST", "certificates/rotate", {"activate": False})
            second = run_job(lbpay, job, holder_id())
        assert first is not None and first["certificates"] == 1
        assert second is not None and second["certificates"] == 2

        rotated = sandbox.control("POST", "certificates/rotate").json()["certificate_serial"]
        clock.advance(61)  # past the once-a-minute limit on refreshes an unknown serial may trigger
        order = paid(shop)
    finally:
        shop.server.stop()

    deliveries = [d for d in sandbox.deliveries() if d["subject"] == order["out_trade_no"]]
    assert 1 <= len(deliveries) <= 2 and deliveries[-1]["ok"], deliveries  # accepted within one re-delivery
    assert rotated in lbpay.verifier.certificates.serials()
    assert deliveries[-1]["serial"] == rotated


# --- 4. current QR codes ------------------------------------------------------------------------


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"ORDER_TTL_MINUTES": "180"}


def _pay_page(sandbox: Sandbox, code_url: str) -> requests.Response:
    pr = code_url.rsplit("pr=", 1)[1]
    return requests.post(f"{sandbox.url}/pay/{pr}", data={"result": "success"}, timeout=10)


def test_a_qr_code_is_replaced_before_its_two_hours_and_the_current_one_can_be_paid(
        shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.control("POST", "settings", {"code_url_lifetime": 1})
    order = shop.order()
    assert dt.datetime.fromisoformat(order["expires_at"]) - dt.datetime.fromisoformat(order["created_at"]) \
        == dt.timedelta(minutes=180)
    old = order["code_url"]
    # The sandbox's code_url has lived its (compressed) lifetime: WeChat no longer takes it.
    assert wait_until(lambda: not shop.sandbox.control("GET", f"orders/{order['out_trade_no']}").json()["payable"])
    assert _pay_page(shop.sandbox, old).status_code == 409

    clock.advance(101 * 60)  # our side: the code is 101 minutes old, near WeChat's 2 hours
    view = shop.poll(order)

    assert view["status"] == "pending" and view["code_url"] != old
    assert view["qr_svg"] == qr_svg(view["code_url"])
    natives = [r for r in shop.sandbox.requests_log() if r["path"] == "/v3/pay/transactions/native"]
    assert len(natives) == 2 and natives[0].get("body") == natives[1].get("body")
    # Our clock moved only to age the code; the sandbox's did not. Back in step, its notification verifies.
    clock.advance(-101 * 60)
    # WeChat's own two hours again: the compressed second aged the old code, and a busy machine once let it
    # age the new one too before the test could pay it.
    assert shop.sandbox.control("POST", "settings", {"code_url_lifetime": 7200}).status_code == 200
    assert _pay_page(shop.sandbox, view["code_url"]).status_code == 200
    assert shop.wait_for_status(order, "fulfilled")["status"] == "fulfilled"


# --- 5. no reliance on ORDERPAID ----------------------------------------------------------------


def test_cancelling_an_order_paid_at_wechat_asks_first_and_fulfils_it(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    shop.sandbox.control("DELETE", "log")

    answer = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "order_already_paid"
    assert shop.poll(order)["status"] == "fulfilled"
    assert not any(path.endswith("/close") for path in api_paths(shop.sandbox))


def test_a_close_that_answers_204_for_a_paid_order_is_no_proof_and_the_payment_is_flagged(
        shop: Shop, make_notification: Any) -> None:
    order = shop.order()
    # The learner pays between our query and our close: WeChat's 204 for the close says nothing.
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200
    late = shop.notify(make_notification(order))

    assert late.status_code in (200, 204)
    row = order_row(order)
    assert (row.status, row.flag) == ("closed", "LATE_PAYMENT")


def test_an_expired_order_paid_at_the_last_moment_is_fulfilled_not_closed(shop: Shop, clock: FakeClock) -> None:
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    clock.advance(181 * 60)
    with models.db.connection_context():
        summary = run_job(shop_of(shop), "reconcile", holder_id())

    assert summary is not None and summary["fulfilled"] == 1 and summary["closed"] == 0
    assert order_row(order).status == "fulfilled"


# --- 6. wrong serials are configuration errors ---------------------------------------------------


def test_a_wrong_public_key_id_is_a_configuration_error_in_readyz_metrics_and_alerts_not_an_outage(
        tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock) -> None:
    shop = start_shop(tmp_path, keys, sandbox, clock, WECHATPAY_PUBLIC_KEY_ID="PUB_KEY_ID_0199999999999999",
                      METRICS_TOKEN="metrics-token-0123456789")
    try:
        answer = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"})
        operator = {"Authorization": "Bearer metrics-token-0123456789"}  # /readyz details are the operator's
        ready = shop.get("/readyz", headers=operator)
        metrics = shop.get("/metrics", headers=operator).text
        clock.advance(11 * 60)
        with models.db.connection_context():
            look_for_trouble(shop_of(shop), shop_of(shop).now())
    finally:
        shop.server.stop()

    assert answer.status_code == 503 and answer.json()["error"]["code"] == "shop_setup_error"
    check = ready.json()["checks"]["wechat_config"]
    assert ready.status_code == 503 and not check["ok"] and "configuration error" in check["detail"]
    assert "lbpay_wechat_config_problem 1" in metrics
    assert re.search(r'lbpay_wechat_api_calls_total\{endpoint="create_native_order",outcome="config_error"\} 1',
                     metrics)
    assert len(alerts_of("wechat_config")) == 1 and alerts_of("wechat_unreachable") == []


# --- 8. the daily bill --------------------------------------------------------------------------


def beijing_today() -> dt.date:
    return dt.datetime.now(CHINA).date()


def refunded(shop: Shop, order: dict[str, Any], fen: int) -> str:
    with models.db.connection_context():
        refund = request_refund(shop_of(shop), order_row(order), amount_fen=fen, reason="对账测试",
                                revoke_license=False, actor="admin:t")

    def settled() -> bool:
        with models.db.connection_context():
            return models.Refund.get_by_id(refund.id).status == "SUCCESS"

    assert wait_until(settled)
    return str(refund.out_refund_no)


def differences() -> list[tuple[str, str | None, str | None]]:
    with models.db.connection_context():
        return sorted((d.kind, d.out_trade_no, d.out_refund_no) for d in models.BillDifference.select())


def test_the_bill_job_finds_each_kind_of_planted_difference_and_alerts_once(shop: Shop, clock: FakeClock) -> None:
    sandbox = shop.sandbox
    sandbox.control("POST", "settings", {"bill_ready_after": -86400})  # today's bill is out already
    a, b, c, d = (paid(shop) for _ in range(4))
    refund_d = refunded(shop, d, 500)
    unknown = sandbox.control("POST", "bills/plants", {"kind": "unknown_payment", "total": 4200}).json()
    sandbox.control("POST", "bills/plants", {"kind": "amount", "out_trade_no": a["out_trade_no"], "total": 100})
    sandbox.control("POST", "bills/plants", {"kind": "missing_payment", "out_trade_no": b["out_trade_no"]})
    planted_refund = sandbox.control("POST", "bills/plants", {"kind": "unknown_refund",
                                                              "out_trade_no": c["out_trade_no"],
                                                              "refund": 300}).json()
    sandbox.control("POST", "bills/plants", {"kind": "missing_refund", "out_refund_no": refund_d})

    clock.advance(86400)  # the job checks "yesterday" by our clock: the sandbox's today
    lbpay = shop_of(shop)
    with models.db.connection_context():
        first = run_job(lbpay, "bill_compare", holder_id())
        again = run_job(lbpay, "bill_compare", holder_id())
        checked = check_daily_bills(lbpay, lbpay.now(), days=[beijing_today()])

    assert first is not None and first["checked"][-1] == beijing_today().isoformat()
    assert differences() == sorted([
        ("paid_not_licensed", unknown["out_trade_no"], None),
        ("amount_differs", a["out_trade_no"], None),
        ("unknown_to_wechat", b["out_trade_no"], None),
        ("refund_missing_here", c["out_trade_no"], planted_refund["out_refund_no"]),
        ("refund_missing_at_wechat", d["out_trade_no"], refund_d),
    ])
    assert again == {"checked": [], "differences": 0}  # the day is done; nothing asked twice
    assert checked["differences"] == 5 and len(differences()) == 5  # by hand: found again, kept once
    assert len(alerts_of("bill_differences")) == 1


def test_a_clean_day_reports_nothing_and_an_unpublished_bill_waits(shop: Shop, clock: FakeClock) -> None:
    lbpay = shop_of(shop)
    paid(shop)
    refunded(shop, paid(shop), 900)
    clock.advance(86400)
    with models.db.connection_context():
        waiting = run_job(lbpay, "bill_compare", holder_id())  # WeChat publishes after 10:00 the next day
    shop.sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    with models.db.connection_context():
        clean = run_job(lbpay, "bill_compare", holder_id())

    assert waiting is not None and beijing_today().isoformat() in waiting["not_ready"]
    assert "failed" not in waiting
    assert clean is not None and beijing_today().isoformat() in clean["checked"] and clean["differences"] == 0
    assert differences() == [] and alerts_of("bill_differences") == [] and alerts_of("bill_failed") == []


def test_lbpay_bill_check_runs_one_day_by_hand_and_the_console_shows_the_differences(
        tmp_path: Path, shop: Shop, keys: Keys) -> None:
    from test_admin import EMAIL, PASSWORD, Console

    shop.sandbox.control("POST", "settings", {"bill_ready_after": -86400})
    order = paid(shop)
    shop.sandbox.control("POST", "bills/plants", {"kind": "amount", "out_trade_no": order["out_trade_no"],
                                                  "total": 1})
    settings = live_config(tmp_path, keys, shop.sandbox.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update({f"LBPAY_{k}": str(v) for k, v in settings.items()})
    day = beijing_today().isoformat()
    run = subprocess.run([sys.executable, "-c", "from cli import main; main()", "bill", "check", "--date", day],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr
    assert f"amount_differs\t{order['out_trade_no']}" in run.stdout
    assert json.loads(run.stdout.strip().splitlines()[-1])["checked"] == [day]

    from billing.admin_users import create_admin

    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    console = Console(shop)
    assert console.get("/admin/bills").status_code in (302, 303)  # the creator's eyes only
    console.login()
    page = console.page("/admin/bills")
    assert f'data-kind="amount_differs"' in page and order["out_trade_no"] in page
    assert 'href="/admin/bills"' in console.page("/admin/")
