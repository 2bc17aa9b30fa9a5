"""Issue 24, the WeChat Pay part: money that settles elsewhere and WeChat's remaining rules, over real HTTPS.

Refunds settled outside our request path (abnormal, made by hand in 商户平台), public-key-only
merchants, code_url issue times, non-transient Native errors, cancel before WeChat's 5 minutes,
the daily bill's rules, the sandbox's leftovers, and one out_trade_no per purchase attempt.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from conftest import FakeClock, Shop
from test_wechat_billing import order_row, paid, shop_of, wait_until

import models
from operations.scheduler import holder_id, run_job

NATIVE = "/v3/pay/transactions/native"


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
