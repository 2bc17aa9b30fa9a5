"""Health, readiness and Prometheus metrics, over real HTTP against our app in live mode."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock, LiveServer, Shop, another_writer, live_config, start_shop

import models
from app import create_app

TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"METRICS_TOKEN": TOKEN}


def scrape(shop: Shop, token: str | None = TOKEN) -> str:
    response = shop.get("/metrics", token=token)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None when it is absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        assert match, f"not a sample line: {line!r}"
        if match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if found == labels:
            return float(match.group(4))
    return None


def test_healthz_answers_while_the_process_is_up(shop: Shop) -> None:
    response = shop.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert len(response.headers["X-Request-Id"]) == 32


def test_readyz_checks_database_keys_scheduler_and_reconciliation(shop: Shop, clock: FakeClock) -> None:
    ready = shop.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert set(checks) == {"database", "keys", "scheduler", "reconcile", "wechat_config"}
    assert all(c["ok"] for c in checks.values())

    # Eleven minutes later with no reconciliation run, the service is not ready…
    clock.advance(11 * 60)
    stale = shop.get("/readyz", token=TOKEN)
    assert stale.status_code == 503
    assert stale.json()["checks"]["reconcile"] == {"ok": False, "detail": "never ran"}

    # …until a reconciliation pass finishes.
    from operations.scheduler import run_job

    with models.db.connection_context():
        assert run_job(shop.app.extensions["lbpay.shop"], "reconcile", "test") is not None
    assert shop.get("/readyz").status_code == 200


def test_readyz_tells_anonymous_callers_only_ready_or_not(shop: Shop) -> None:
    """issue 15: the license kid, key counts and error texts are for the holder of the metrics token."""
    kid = shop.app.extensions["lbpay.shop"].license_keys.active.kid
    for token in (None, "not-the-metrics-token-0000000000"):
        anonymous = shop.get("/readyz", token=token)
        assert anonymous.status_code == 200
        assert anonymous.json() == {"status": "ready", "checks": {name: {"ok": True} for name in
                                                                  ("database", "keys", "scheduler", "reconcile", "wechat_config")}}
        assert kid not in anonymous.text and "APIv3" not in anonymous.text
    operator = shop.get("/readyz", token=TOKEN)
    assert kid in operator.json()["checks"]["keys"]["detail"]


def test_readyz_is_not_ready_while_the_database_refuses_writes(tmp_path, keys, sandbox, clock) -> None:
    import requests

    app = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock, "DB_BUSY_TIMEOUT_MS": 200,
                      "METRICS_TOKEN": TOKEN})
    with models.db.connection_context():
        models.create_tables()
    server = LiveServer(app)
    holder = another_writer(app.extensions["lbpay.shop"].config.database_url)
    try:
        # another writer holds the lock past the busy timeout (SQLite's, or PostgreSQL's lock_timeout)
        anonymous = requests.get(server.url + "/readyz", timeout=10)
        busy = requests.get(server.url + "/readyz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        holder.rollback()
        after = requests.get(server.url + "/readyz", timeout=10)
    finally:
        holder.close()
        server.stop()
    assert busy.status_code == 503
    assert busy.json()["checks"]["database"]["ok"] is False
    assert re.search("locked|lock timeout", busy.json()["checks"]["database"]["detail"])
    # Anyone may see that it is not ready, never the database's error text.
    assert anonymous.status_code == 503 and anonymous.json()["checks"]["database"] == {"ok": False}
    assert "lock" not in anonymous.text
    assert after.status_code == 200


def test_metrics_answers_404_when_no_token_is_set(tmp_path, keys, sandbox, clock) -> None:
    app = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock})
    server = LiveServer(app)
    try:
        import requests

        assert requests.get(server.url + "/metrics", timeout=5).status_code == 404
        assert requests.get(server.url + "/metrics", headers={"Authorization": "Bearer x" * 3},
                            timeout=5).status_code == 404
    finally:
        server.stop()


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", TOKEN + "x", TOKEN[:-1]])
def test_metrics_refuse_a_missing_or_wrong_token(shop: Shop, token: str | None) -> None:
    response = shop.get("/metrics", token=token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "lbpay_" not in response.text


def test_metrics_after_a_sandbox_purchase(shop: Shop, make_notification, capsys) -> None:
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    assert shop.wait_for_status(order, "fulfilled")["status"] == "fulfilled"
    shop.order()  # a second order, left pending
    # A forged notification and a duplicate of the real one.
    assert shop.notify(make_notification(order, signing_key=shop.keys.forger)).status_code == 401

    text = scrape(shop)
    with capsys.disabled():
        print("\n--- /metrics after one sandbox purchase ---\n" + text)
    assert sample(text, "lbpay_orders", status="fulfilled") == 1
    assert sample(text, "lbpay_orders", status="pending") == 1
    assert sample(text, "lbpay_notifications_total", kind="transaction", result="fulfilled") == 1
    assert sample(text, "lbpay_notifications_total", kind="transaction", result="bad_signature") == 1
    assert sample(text, "lbpay_wechat_api_calls_total", endpoint="create_native_order", outcome="ok") == 2
    assert sample(text, "lbpay_wechat_api_seconds_count", endpoint="create_native_order", outcome="ok") == 2
    assert sample(text, "lbpay_wechat_api_seconds_bucket", endpoint="create_native_order", outcome="ok",
                  le="+Inf") == 2
    assert sample(text, "lbpay_payment_to_license_seconds_count") == 1
    assert sample(text, "lbpay_mail_outbox_depth") is not None
    assert sample(text, "lbpay_wechat_failing_since_seconds") == 0
    kid = shop.app.extensions["lbpay.shop"].license_keys.active.kid
    assert sample(text, "lbpay_licenses", kid=kid) == 1
    # Histogram buckets are cumulative and end at the count.
    buckets = [float(v) for v in re.findall(
        r'^lbpay_wechat_api_seconds_bucket\{endpoint="create_native_order",outcome="ok",le="[^"]+"\} (\S+)$',
        text, re.M)]
    assert buckets == sorted(buckets) and buckets[-1] == 2


def test_metrics_count_calls_made_by_every_worker(shop: Shop, tmp_path, keys, sandbox, clock) -> None:
    # A second app on the same database stands in for a second gunicorn worker.
    second = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock, "METRICS_TOKEN": TOKEN})
    server = LiveServer(second)
    try:
        import requests

        for url in (shop.url, server.url, server.url):
            assert requests.post(url + "/api/v1/orders", json={"course_id": "cpp-primer-5th"},
                                 timeout=15).status_code == 201
        scrapes = []
        # Each worker adds its tally to the table every 5 s and before it answers a scrape; here
        # the first scrape of each stands in for those 5 s, the second shows what every worker did.
        for _ in range(2):
            for url in (shop.url, server.url):
                scrapes.append(requests.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                                            timeout=5).text)
        assert sample(scrapes[0], "lbpay_wechat_api_calls_total", endpoint="create_native_order", outcome="ok") == 1
        for text in scrapes[2:]:
            assert sample(text, "lbpay_wechat_api_calls_total", endpoint="create_native_order", outcome="ok") == 3
            assert sample(text, "lbpay_orders", status="pending") == 3
    finally:
        server.stop()


def test_wechat_failures_are_counted_and_mark_it_failing(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 10, "status": 500, "code": "SYSTEM_ERROR"}})
    response = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"})
    assert response.status_code == 503
    text = scrape(shop)
    assert sample(text, "lbpay_wechat_api_calls_total", endpoint="create_native_order",
                  outcome="api_error_5xx") == 1
    assert sample(text, "lbpay_wechat_failing_since_seconds") > 0


def logged_ip(shop: Shop, caplog, headers: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    caplog.set_level("INFO", logger="lbpay.request")
    rid = "req-" + uuid.uuid4().hex
    response = shop.get("/healthz", headers={**headers, "X-Request-Id": rid})
    assert response.headers["X-Request-Id"] == rid and response.status_code == 200
    line = [r for r in caplog.records if getattr(r, "request_id", None) == rid][-1]
    assert line.path == "/healthz"
    return str(line.ip)


SPOOFED = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7", "X-Forwarded-Proto": "https"}


def test_by_default_no_proxy_is_trusted(shop: Shop, caplog) -> None:  # type: ignore[no-untyped-def]
    assert logged_ip(shop, caplog, SPOOFED) == "127.0.0.1"  # a client cannot name its own address


def test_the_proxy_hop_sets_the_client_address_and_https(tmp_path: Path, keys, sandbox, clock,  # type: ignore[no-untyped-def]
                                                          caplog) -> None:
    caplog.set_level("INFO", logger="lbpay")
    shop = start_shop(tmp_path, keys, sandbox, clock, PROXY_HOPS="1")
    try:
        assert "X-Forwarded-For, trusting 1 proxy hop" in caplog.text  # start-up says where addresses come from
        # One hop trusted: the address the edge saw, not what the client wrote.
        assert logged_ip(shop, caplog, SPOOFED) == "198.51.100.7"
    finally:
        shop.server.stop()


def test_on_fly_the_client_ip_header_names_the_client(tmp_path: Path, keys, sandbox, clock,  # type: ignore[no-untyped-def]
                                                      caplog) -> None:
    caplog.set_level("INFO", logger="lbpay")
    shop = start_shop(tmp_path, keys, sandbox, clock, PROXY_HOPS="1", CLIENT_IP_HEADER="Fly-Client-IP")
    try:
        assert "the Fly-Client-IP header when present" in caplog.text
        assert logged_ip(shop, caplog, {**SPOOFED, "Fly-Client-IP": "2001:db8::7"}) == "2001:db8::7"
        assert logged_ip(shop, caplog, {**SPOOFED, "Fly-Client-IP": "not an address"}) == "198.51.100.7"
        assert logged_ip(shop, caplog, SPOOFED) == "198.51.100.7"  # Fly's own checks come without it
    finally:
        shop.server.stop()


def test_live_mode_sends_hsts_and_never_redirects_api_or_notify(shop: Shop) -> None:
    response = shop.get("/api/v1/courses")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    notify = shop.session.post(shop.url + "/wechatpay/notify/transaction", data=b"{}", allow_redirects=False,
                               timeout=5)
    assert notify.status_code in (400, 401)
    assert response.status_code == 200
