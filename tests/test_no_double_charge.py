"""No double charge: retries, idempotency keys and a buyer's open order never make a second WeChat order."""

from __future__ import annotations

import time

from conftest import Shop

import models

COURSE = {"course_id": "cpp-primer-5th"}


def native_orders(shop: Shop) -> list[dict]:
    return [r for r in shop.sandbox.requests_log() if r["path"] == "/v3/pay/transactions/native"]


def test_the_same_idempotency_key_gets_the_same_answer(shop: Shop) -> None:
    first = shop.post("/api/v1/orders", COURSE, headers={"Idempotency-Key": "k-1234567890-abcdef"})
    again = shop.post("/api/v1/orders", COURSE, headers={"Idempotency-Key": "k-1234567890-abcdef"})
    assert first.status_code == again.status_code == 201
    a, b = first.json(), again.json()
    for name in ("order_id", "order_token", "buyer_token", "code_url", "out_trade_no", "amount_fen"):
        assert a[name] == b[name], name
    with models.db.connection_context():
        assert models.Order.select().count() == 1 and models.Buyer.select().count() == 1


def test_an_idempotency_key_reused_for_another_course_is_refused(shop: Shop) -> None:
    assert shop.post("/api/v1/orders", COURSE, headers={"Idempotency-Key": "k-abcdefgh-12345678"}).status_code == 201
    other = shop.post("/api/v1/orders", {"course_id": "rust-monthly"}, headers={"Idempotency-Key": "k-abcdefgh-12345678"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_a_buyer_with_an_open_order_gets_that_order_back(shop: Shop) -> None:
    first = shop.order()
    again = shop.order(buyer_token=first["buyer_token"])
    assert again["order_id"] == first["order_id"] and again["code_url"] == first["code_url"]
    assert len(native_orders(shop)) == 1


def test_a_buyer_who_holds_a_license_for_a_one_time_course_is_not_charged_again(shop: Shop) -> None:
    first = shop.order()
    shop.sandbox.pay(first["out_trade_no"])
    licensed = shop.wait_for_status(first, "fulfilled")
    response = shop.post("/api/v1/orders", {**COURSE, "buyer_token": first["buyer_token"]})
    assert response.status_code == 409
    body = response.json()
    assert body["error"]["code"] == "already_licensed"
    assert body["license"]["id"] == licensed["license"]["id"]
    assert body["license"]["key"] == licensed["license"]["key"]


def test_wechat_down_then_up_the_retry_makes_one_order_and_one_payable_code(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 3, "status": 500, "code": "SYSTEM_ERROR"}})
    down = shop.post("/api/v1/orders", COURSE, headers={"Idempotency-Key": "k-retry-0001-abcdefg"})
    assert down.status_code == 503 and down.headers["Retry-After"].isdigit()
    assert down.json()["error"]["code"] == "wechat_unavailable"
    up = shop.post("/api/v1/orders", COURSE, headers={"Idempotency-Key": "k-retry-0001-abcdefg"})
    assert up.status_code == 201, up.text
    attempts = native_orders(shop)
    assert len(attempts) == 4  # three refused tries, then the one that worked
    with models.db.connection_context():
        assert models.Order.select().count() == 1
    state = shop.sandbox.control("GET", f"orders/{up.json()['out_trade_no']}").json()
    assert state["trade_state"] == "NOTPAY"


def test_a_transient_wechat_error_is_retried_inside_one_request(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 2, "status": 500, "code": "SYSTEM_ERROR"}})
    assert shop.post("/api/v1/orders", COURSE).status_code == 201
    assert len(native_orders(shop)) == 3


def test_a_rejected_order_is_not_retried(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 1, "status": 400, "code": "PARAM_ERROR"}})
    assert shop.post("/api/v1/orders", COURSE).status_code == 503
    assert len(native_orders(shop)) == 1


def test_a_hanging_wechat_gives_up_at_the_read_timeout(tmp_path, keys, sandbox, clock) -> None:
    from conftest import LiveServer, live_config

    from app import create_app
    from billing.courses import save_course

    app = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock, "WECHATPAY_READ_TIMEOUT": "1"})
    with models.db.connection_context():
        models.create_tables()
        save_course(app.extensions["lbpay.shop"], course_id="cpp-primer-5th", title="C++", price_fen=9900)
    server = LiveServer(app)
    try:
        sandbox.control("POST", "faults", {"api": {"hang_next": 5, "seconds": 3}})
        import requests

        started = time.monotonic()
        response = requests.post(server.url + "/api/v1/orders", json=COURSE, timeout=30)
        took = time.monotonic() - started
    finally:
        server.stop()
    assert response.status_code == 503
    # three tries of about one second each, with short back-off between them
    assert 2.5 < took < 6, took
