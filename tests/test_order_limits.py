"""Order creation under abuse: idempotency keys bound to their buyer, per-address and per-buyer limits (THREATS #56, #57, #61)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Shop, start_shop
from test_openapi import check

import models
from billing import limits

COURSE = {"course_id": "cpp-primer-5th"}
KEY = "k-7f3c9a2e-5b1d-4e8a"


def native_orders(shop: Shop) -> int:
    return sum(1 for r in shop.sandbox.requests_log() if r["path"] == "/v3/pay/transactions/native")


def post_order(shop: Shop, body: dict[str, Any], key: str | None = None, address: str | None = None) -> Any:
    headers = {}
    if key:
        headers["Idempotency-Key"] = key
    if address:
        headers["X-Forwarded-For"] = address
    return shop.post("/api/v1/orders", body, headers=headers)


def test_a_replayed_idempotency_key_from_anyone_else_gets_409_and_no_token(shop: Shop) -> None:
    mine = shop.order()
    body = {**COURSE, "buyer_token": mine["buyer_token"], "email": "learner@example.com"}
    shop.sandbox.pay(mine["out_trade_no"])
    shop.wait_for_status(mine, "fulfilled")
    first = post_order(shop, {"course_id": "rust-monthly", "buyer_token": mine["buyer_token"]}, KEY)
    assert first.status_code == 201
    stranger = shop.order()  # a buyer of their own
    for replay in ({"course_id": "rust-monthly"},
                   {"course_id": "rust-monthly", "buyer_token": stranger["buyer_token"]}):
        refused = post_order(shop, replay, KEY)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "idempotency_key_conflict"
        assert "order_token" not in refused.text and "buyer_token" not in refused.text
        assert first.json()["order_token"] not in refused.text
        check(refused, "/orders", "post")
    other_body = post_order(shop, body, KEY)
    assert other_body.status_code == 422 and "order_token" not in other_body.text
    again = post_order(shop, {"course_id": "rust-monthly", "buyer_token": mine["buyer_token"]}, KEY)
    assert again.status_code == 201 and again.json()["order_id"] == first.json()["order_id"]


def test_an_anonymous_keyed_order_replays_only_with_the_same_body(shop: Shop) -> None:
    body = {**COURSE, "email": "learner@example.com"}
    first = post_order(shop, body, KEY)
    assert post_order(shop, body, KEY).json()["buyer_token"] == first.json()["buyer_token"]
    changed = post_order(shop, {**COURSE, "email": "someone-else@example.com"}, KEY)
    assert changed.status_code == 422 and "buyer_token" not in changed.text


def test_an_anonymous_keyed_order_replays_only_to_its_own_address(tmp_path: Any, keys: Any, sandbox: Any,
                                                                   clock: Any) -> None:
    # Issue 24: the key (seen in a log, a shared proxy, a crash report) was enough to take the first
    # order's order_token and buyer_token from anywhere. An anonymous order has no buyer yet, so its
    # sender is its client address (an IPv6 /64: the learner's own network).
    shop = start_shop(tmp_path, keys, sandbox, clock, PROXY_HOPS="1")
    try:
        body = {**COURSE, "email": "learner@example.com"}
        first = post_order(shop, body, KEY, address="2001:db8:7:7::10")
        assert first.status_code == 201
        for elsewhere in ("198.51.100.9", "2001:db8:7:8::10"):
            refused = post_order(shop, body, KEY, address=elsewhere)
            assert refused.status_code == 409 and refused.json()["error"]["code"] == "idempotency_key_conflict"
            assert first.json()["order_token"] not in refused.text
            assert first.json()["buyer_token"] not in refused.text
        again = post_order(shop, body, KEY, address="2001:db8:7:7::beef")  # a new privacy address, same /64
        assert again.status_code == 201 and again.json()["order_token"] == first.json()["order_token"]
    finally:
        shop.server.stop()


@pytest.mark.parametrize("key", ["k-12345678", "x" * 15, "x" * 201])
def test_idempotency_keys_must_be_16_to_200_characters(shop: Shop, key: str) -> None:
    response = post_order(shop, COURSE, key)
    assert response.status_code == 400 and "16 to 200" in response.json()["error"]["detail"]
    assert native_orders(shop) == 0


def test_order_creation_is_limited_per_client_address_before_wechat_is_called(shop: Shop) -> None:
    shop.clock.freeze()
    answers = [post_order(shop, COURSE).status_code for _ in range(limits.ORDERS_PER_CLIENT.count + 1)]
    assert answers == [201] * limits.ORDERS_PER_CLIENT.count + [429]
    assert native_orders(shop) == limits.ORDERS_PER_CLIENT.count
    refused = post_order(shop, COURSE)
    assert refused.json()["error"]["code"] == "rate_limited"
    check(refused, "/orders", "post")
    wait = int(refused.headers["Retry-After"])
    assert wait == round(limits.ORDERS_PER_CLIENT.step)  # exactly when the next one is let through
    shop.clock.advance(wait - 1)
    assert post_order(shop, COURSE).status_code == 429
    shop.clock.advance(1)
    assert post_order(shop, COURSE).status_code == 201


def test_pending_orders_are_limited_per_buyer_until_one_expires(shop: Shop) -> None:
    from billing.courses import save_course

    shop.clock.freeze()
    cap = limits.PENDING_ORDERS_PER_BUYER
    with models.db.connection_context():
        for n in range(cap + 1):
            save_course(shop.app.extensions["lbpay.shop"], course_id=f"course-{n}", title=f"Course {n}",
                        price_fen=100)
    buyer = shop.order("course-0")["buyer_token"]
    for n in range(1, cap):
        shop.clock.advance(10)
        assert post_order(shop, {"course_id": f"course-{n}", "buyer_token": buyer}).status_code == 201
    refused = post_order(shop, {"course_id": f"course-{cap}", "buyer_token": buyer})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_pending_orders"
    check(refused, "/orders", "post")
    # Retry-After says when the first of them expires (30 minutes after it was placed).
    assert int(refused.headers["Retry-After"]) == 30 * 60 - 10 * (cap - 1)
    assert post_order(shop, {"course_id": f"course-{cap}"}).status_code == 201  # another buyer is not limited
    shop.clock.advance(int(refused.headers["Retry-After"]))
    assert post_order(shop, {"course_id": f"course-{cap}", "buyer_token": buyer}).status_code == 201


def test_pending_orders_are_limited_per_client_address(shop: Shop) -> None:
    shop.clock.freeze()
    cap = limits.PENDING_ORDERS_PER_CLIENT
    for _ in range(cap):
        assert post_order(shop, COURSE).status_code == 201
        shop.clock.advance(limits.ORDERS_PER_CLIENT.step)  # slowly enough for the rate limit
    refused = post_order(shop, COURSE)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_pending_orders"
    assert int(refused.headers["Retry-After"]) == 30 * 60 - cap * limits.ORDERS_PER_CLIENT.step
    assert native_orders(shop) == cap


def test_a_spoofed_forwarded_for_cannot_refill_a_limit(shop: Shop) -> None:
    # THREATS #56/#57: with no proxy configured the header is ignored; 100 wrong order ids are limited.
    shop.clock.freeze()
    answers = [shop.get("/api/v1/orders/ord_doesnotexist", token="wrong-token",
                        headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(100)]
    assert answers[:limits.ORDER_MISSES_PER_CLIENT.count] == [404] * limits.ORDER_MISSES_PER_CLIENT.count
    assert set(answers[limits.ORDER_MISSES_PER_CLIENT.count:]) == {429}
    orders = [post_order(shop, COURSE, address=f"203.0.113.{n}").status_code for n in range(12)]
    assert orders.count(429) == 2


def test_behind_one_proxy_the_client_written_part_of_the_header_cannot_refill_a_limit(
        tmp_path: Any, keys: Any, sandbox: Any, clock: Any) -> None:
    shop = start_shop(tmp_path, keys, sandbox, clock, PROXY_HOPS="1")
    try:
        clock.freeze()
        answers = [post_order(shop, COURSE, address=f"10.0.{n}.1, 198.51.100.7").status_code for n in range(12)]
        assert answers.count(429) == 2
        assert post_order(shop, COURSE, address="198.51.100.8").status_code == 201  # another learner
    finally:
        shop.server.stop()
