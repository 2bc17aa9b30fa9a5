"""The extension's API: bad input gets a clear bilingual error and changes nothing."""

from __future__ import annotations

import pytest
from conftest import Shop

import models


def table_sizes() -> dict[str, int]:
    with models.db.connection_context():
        return {m.__name__: m.select().count() for m in (models.Order, models.Buyer, models.License)}


@pytest.mark.parametrize("payload, status, code", [
    ({"course_id": "no-such-course"}, 404, "course_not_found"),
    ({"course_id": "Bad Slug!"}, 404, "course_not_found"),
    ({"course_id": 42}, 404, "course_not_found"),
    ({}, 404, "course_not_found"),
    ({"course_id": "cpp-primer-5th", "buyer_token": "bt_" + "x" * 43}, 401, "buyer_token_invalid"),
    ({"course_id": "cpp-primer-5th", "buyer_token": 7}, 401, "buyer_token_invalid"),
    ({"course_id": "cpp-primer-5th", "email": "not-an-address"}, 400, "bad_request"),
    ({"course_id": "cpp-primer-5th", "email": "<script>@x.cn"}, 400, "bad_request"),
    ({"course_id": "cpp-primer-5th", "amount_fen": 1}, 400, "bad_request"),
    (["cpp-primer-5th"], 400, "bad_request"),
])
def test_a_bad_order_request_gets_a_clear_error_and_creates_nothing(shop: Shop, payload, status, code) -> None:
    before = table_sizes()
    response = shop.post("/api/v1/orders", payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message_zh"] and error["message_en"] and error["action"]
    assert table_sizes() == before
    assert not [r for r in shop.sandbox.requests_log() if r["path"] == "/v3/pay/transactions/native"]


def test_a_body_that_is_not_json_gets_bad_request(shop: Shop) -> None:
    response = shop.session.post(shop.url + "/api/v1/orders", data=b"{oops",
                                 headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_an_inactive_course_is_not_for_sale(shop: Shop) -> None:
    from billing.courses import save_course

    with models.db.connection_context():
        save_course(shop.app.extensions["lbpay.shop"], course_id="old-course", title="Old", price_fen=100,
                    active=False)
    assert shop.post("/api/v1/orders", {"course_id": "old-course"}).json()["error"]["code"] == "course_not_found"
    assert "old-course" not in [c["id"] for c in shop.get("/api/v1/courses").json()["courses"]]


def test_an_unknown_api_path_answers_json(shop: Shop) -> None:
    response = shop.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_tokens_are_stored_only_as_hashes(shop: Shop) -> None:
    order = shop.order()
    with models.db.connection_context():
        row = models.Order.get()
        buyer = models.Buyer.get()
    assert order["order_token"] not in (row.token_hash,) and len(row.token_hash) == 64
    assert order["buyer_token"] != buyer.token_hash and len(buyer.token_hash) == 64


def test_wechat_down_gives_503_with_retry_after_and_no_code_url(shop: Shop) -> None:
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 10, "status": 500, "code": "SYSTEM_ERROR"}})
    response = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"})
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["error"]["code"] == "wechat_unavailable"
    assert response.json()["error"]["action"] == "retry_later"


def test_pages_carry_security_headers(shop: Shop) -> None:
    response = shop.get("/buy/cpp-primer-5th")
    assert response.status_code == 200
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "C++ Primer 第5版" in response.text and "¥99.00" in response.text


def test_an_unknown_course_page_is_a_bilingual_404(shop: Shop) -> None:
    response = shop.get("/buy/no-such-course")
    assert response.status_code == 404
    assert "课程不存在" in response.text and "does not exist" in response.text


def test_a_client_guessing_order_ids_or_tokens_is_refused_for_a_while(shop: Shop) -> None:
    """THREATS #46/#56: 30 misses a minute, then 429 for every wrong lookup; a right token is never a guess (issue 24)."""
    order = shop.order()
    shop.clock.freeze()  # the limit refills one miss each 2 s: hold time still while the burst is spent
    for _ in range(30):
        assert shop.get(f"/api/v1/orders/{order['order_id']}", token="wrong-token").status_code == 404
    refused = shop.get(f"/api/v1/orders/{order['order_id']}", token="wrong-token")
    assert refused.status_code == 429 and refused.headers["Retry-After"].isdigit()
    assert refused.json()["error"]["code"] == "rate_limited"
    assert shop.get(f"/api/v1/orders/{order['order_id']}", token=order["order_token"]).status_code == 200
    assert shop.get(f"/api/v1/orders/{order['order_id']}", token="wrong-token").status_code == 429
    shop.clock.advance(61)
    assert shop.get(f"/api/v1/orders/{order['order_id']}", token="wrong-token").status_code == 404


def test_an_extension_polling_its_own_order_is_never_throttled(shop: Shop) -> None:
    order = shop.order()
    for _ in range(100):
        assert shop.get(f"/api/v1/orders/{order['order_id']}", token=order["order_token"]).status_code == 200
