"""Rules of billing/orders.py that no test broke when they were broken (issue 24: mutation survivors).

Each test names the condition it holds; ``python tests/mutation.py billing/orders.py ...`` drops or
flips that condition and this file must then fail.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import Shop
from learner_helpers import buy

import models
from billing.courses import save_course

KEY = "k-rules-0001-abcdefgh"


def core(shop: Shop) -> Any:
    return shop.app.extensions["lbpay.shop"]


def order_row(order: dict[str, Any]) -> models.Order:
    with models.db.connection_context():
        return models.Order.get(models.Order.public_id == order["order_id"])


def keyed(shop: Shop, body: dict[str, Any], key: str = KEY) -> Any:
    return shop.post("/api/v1/orders", body, headers={"Idempotency-Key": key})


@pytest.fixture
def second_one_time_course(shop: Shop) -> str:
    with models.db.connection_context():
        save_course(core(shop), course_id="go-primer", title="Go 入门", price_fen=4900)
    return "go-primer"


# --- _existing_order: a pending order is given back only to its buyer, for its course ---------

def test_a_pending_order_is_given_back_only_to_its_own_buyer(shop: Shop) -> None:
    mine = shop.order()
    stranger = shop.order("rust-monthly")  # a buyer of their own, with a token
    theirs = shop.order(buyer_token=stranger["buyer_token"])
    assert theirs["order_id"] != mine["order_id"]
    assert mine["order_token"] not in str(theirs) and theirs["buyer_token"] == stranger["buyer_token"]
    assert shop.order(buyer_token=mine["buyer_token"])["order_id"] == mine["order_id"]  # its own buyer: reused


def test_a_pending_order_is_given_back_only_for_its_own_course(shop: Shop, second_one_time_course: str) -> None:
    mine = shop.order()
    other = shop.order(second_one_time_course, buyer_token=mine["buyer_token"])
    assert other["order_id"] != mine["order_id"]
    assert other["course_id"] == second_one_time_course and other["amount_fen"] == 4900


def test_a_pending_order_about_to_expire_is_not_given_back(shop: Shop) -> None:
    # Less than 2 minutes left is too little to scan and pay: the buyer gets a new order instead.
    shop.clock.freeze()
    mine = shop.order()
    ends = dt.datetime.fromisoformat(mine["expires_at"].replace("Z", "+00:00"))
    shop.clock.advance((ends - dt.timedelta(minutes=2) - shop.clock()).total_seconds() - 1)
    assert shop.order(buyer_token=mine["buyer_token"])["order_id"] == mine["order_id"]
    shop.clock.advance(1)  # exactly 2 minutes left
    assert shop.order(buyer_token=mine["buyer_token"])["order_id"] != mine["order_id"]


def test_a_flagged_or_cancelled_pending_order_is_not_given_back(shop: Shop) -> None:
    mine = shop.order()
    with models.db.connection_context():
        models.Order.update(flag="AMOUNT_MISMATCH").where(models.Order.public_id == mine["order_id"]).execute()
    again = shop.order(buyer_token=mine["buyer_token"])
    assert again["order_id"] != mine["order_id"]
    assert shop.post(f"/api/v1/orders/{again['order_id']}/cancel", token=again["order_token"]).status_code == 200
    third = shop.order(buyer_token=mine["buyer_token"])
    assert third["order_id"] not in (mine["order_id"], again["order_id"])


def test_the_pending_cap_counts_only_orders_still_pending(shop: Shop) -> None:
    from billing import limits

    cap = limits.PENDING_ORDERS_PER_BUYER
    with models.db.connection_context():
        for n in range(cap + 1):
            save_course(core(shop), course_id=f"cap-{n}", title=f"Cap {n}", price_fen=100)
    first = shop.order("cap-0")
    for n in range(1, cap):
        assert shop.post("/api/v1/orders", {"course_id": f"cap-{n}", "buyer_token": first["buyer_token"]}).status_code == 201
    over = shop.post("/api/v1/orders", {"course_id": f"cap-{cap}", "buyer_token": first["buyer_token"]})
    assert over.status_code == 429 and over.json()["error"]["code"] == "too_many_pending_orders"
    assert shop.post(f"/api/v1/orders/{first['order_id']}/cancel", token=first["order_token"]).status_code == 200
    now_free = shop.post("/api/v1/orders", {"course_id": f"cap-{cap}", "buyer_token": first["buyer_token"]})
    assert now_free.status_code == 201, now_free.text


# --- _valid_license_for: "already licensed" only for this buyer's live license of this course ---

def test_already_licensed_only_for_the_course_bought(shop: Shop, second_one_time_course: str) -> None:
    bought = buy(shop)
    again = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "buyer_token": bought["buyer_token"]})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_licensed"
    other = shop.post("/api/v1/orders", {"course_id": second_one_time_course, "buyer_token": bought["buyer_token"]})
    assert other.status_code == 201, other.text


def test_already_licensed_only_for_the_buyer_who_bought(shop: Shop) -> None:
    buy(shop)
    stranger = shop.order("rust-monthly")
    answer = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "buyer_token": stranger["buyer_token"]})
    assert answer.status_code == 201, answer.text


def test_a_revoked_license_does_not_count_as_held(shop: Shop) -> None:
    from billing.licenses import revoke_license

    bought = buy(shop)
    with models.db.connection_context():
        revoke_license(core(shop), order_row(bought), reason="chargeback", actor="test")
    answer = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "buyer_token": bought["buyer_token"]})
    assert answer.status_code == 201, answer.text


def test_an_expired_one_time_license_does_not_count_as_held(shop: Shop) -> None:
    with models.db.connection_context():  # a one-time course sold for a fixed time
        save_course(core(shop), course_id="exam-pass", title="考试冲刺", price_fen=1900, period_days=30)
    shop.clock.freeze()
    bought = buy(shop, "exam-pass")
    held = shop.post("/api/v1/orders", {"course_id": "exam-pass", "buyer_token": bought["buyer_token"]})
    assert held.status_code == 409 and held.json()["error"]["code"] == "already_licensed"
    ends = dt.datetime.fromisoformat(bought["license"]["expires_at"].replace("Z", "+00:00"))
    shop.clock.advance((ends - shop.clock()).total_seconds())  # the very instant it ends: no longer held
    answer = shop.post("/api/v1/orders", {"course_id": "exam-pass", "buyer_token": bought["buyer_token"]})
    assert answer.status_code == 201, answer.text


# --- refresh_code_url: one order's compare-and-set, never another order's row -----------------

@pytest.mark.parametrize("shop_settings", [{"ORDER_TTL_MINUTES": "180"}])  # orders that outlive their QR code
def test_a_code_url_refresh_writes_its_own_order_only_and_only_once(shop: Shop) -> None:
    from billing.orders import CODE_URL_REFRESH_AFTER, refresh_code_url

    shop.clock.freeze()
    first, second = shop.order(), shop.order()  # issued at the same instant
    shop.clock.advance(CODE_URL_REFRESH_AFTER.total_seconds() + 60)
    stale = order_row(first)
    with models.db.connection_context():
        assert refresh_code_url(core(shop), stale) is True
        # The same stale read again (a second poll that read before the first wrote): it loses.
        assert refresh_code_url(core(shop), stale) is False
    fresh = order_row(first)
    assert fresh.code_url != first["code_url"] and fresh.code_url_at == shop.clock()
    untouched = order_row(second)
    assert untouched.code_url == second["code_url"] and untouched.code_url_at == stale.code_url_at


# --- the Idempotency-Key: another course, the race re-read -----------------------------------

def test_a_key_replayed_by_a_stranger_for_another_course_is_a_conflict_not_reuse(shop: Shop) -> None:
    mine = shop.order("rust-monthly")
    assert keyed(shop, {"course_id": "cpp-primer-5th", "buyer_token": mine["buyer_token"]}).status_code == 201
    stranger = shop.order("rust-monthly")
    answer = keyed(shop, {"course_id": "rust-monthly", "buyer_token": stranger["buyer_token"]})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "idempotency_key_conflict"


def test_a_key_of_an_order_placed_before_keys_were_bound_is_not_reused_for_another_course(shop: Shop) -> None:
    first = keyed(shop, {"course_id": "cpp-primer-5th"})
    mine = first.json()
    with models.db.connection_context():  # as migration m0009 left orders made before it
        models.Order.update(idempotency_request=None).where(
            models.Order.public_id == first.json()["order_id"]).execute()
    other = keyed(shop, {"course_id": "rust-monthly", "buyer_token": mine["buyer_token"]})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    same = keyed(shop, {"course_id": "cpp-primer-5th", "buyer_token": mine["buyer_token"]})
    assert same.status_code == 201 and same.json()["order_id"] == first.json()["order_id"]


def test_two_keys_make_two_orders(shop: Shop) -> None:
    # The re-read after WeChat answers looks for this key only: another keyed order is not "the winner".
    one = keyed(shop, {"course_id": "cpp-primer-5th"}, "k-rules-one-abcdefgh")
    two = keyed(shop, {"course_id": "cpp-primer-5th"}, "k-rules-two-abcdefgh")
    assert one.status_code == two.status_code == 201
    assert one.json()["order_id"] != two.json()["order_id"]


# --- the learner's view: a plain pending order shows no error ---------------------------------

def test_a_pending_order_shows_no_error_until_wechat_reports_one(shop: Shop) -> None:
    order = shop.order()
    view = shop.poll(order)
    assert view["status"] == "pending" and view["error"] is None and view["final"] is False


# --- cancel: WeChat's ORDER_CLOSED means "already closed there", the cancel still completes ---

# A cancel that WeChat answers ORDER_CLOSED: test_mutants_orders.py::test_a_late_cancel_that_wechat_answers_…
# (only a cancel past WeChat's 5 minutes closes there at once; one right after the order never asked).


def test_a_cancel_that_wechat_refuses_otherwise_is_an_error_and_changes_nothing(shop: Shop) -> None:
    order = shop.order()
    # A cancel first asks WeChat whether the order was paid (a failed close at WeChat is the reconcile
    # job's to repeat, issue 24): when that question fails, the cancel is an error and changes nothing.
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 10, "status": 500, "code": "SYSTEM_ERROR",
                                                    "paths": "/v3/pay/transactions/out-trade-no/" +
                                                             order["out_trade_no"]}})
    answer = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "wechat_unavailable"
    assert order_row(order).status == "pending"
