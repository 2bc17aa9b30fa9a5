"""Rules of billing/orders.py that no test broke when they were broken (issue 24: mutation survivors).

``python tests/mutation.py billing/orders.py ...`` flips or shifts one condition at a time; each
test here holds one rule that survived that, and fails with its mutant (docs/mutation/orders.md
lists which test kills which mutant). Orders are placed and polled over HTTP, as the extension does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FakeClock, Shop
from test_alipay_billing import AlipayShop

import models


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"ORDER_TTL_MINUTES": "180"}  # orders that outlive their first code_url


@pytest.fixture(scope="module")
def both_methods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlipayShop]:
    """A shop that sells through WeChat Pay and Alipay (sandbox mode, its simulators in-process)."""
    box = AlipayShop(tmp_path_factory.mktemp("mutants_alipay"))
    yield box
    box.app.extensions["lbpay.alipay_sandbox"].extensions["alipay_sandbox"].stop()
    box.server.stop()


def order_row(order: dict[str, Any]) -> models.Order:
    with models.db.connection_context():
        return models.Order.get(models.Order.public_id == order["order_id"])


# --- _existing_order: a pending order is given back only for the method asked for ---------------

def test_a_pending_wechat_order_is_not_given_back_to_an_alipay_request(both_methods: AlipayShop) -> None:
    wechat = both_methods.order()
    assert wechat.status_code == 201, wechat.text
    mine = wechat.json()
    alipay = both_methods.order(method="alipay", buyer_token=mine["buyer_token"])
    assert alipay.status_code == 201, alipay.text
    assert alipay.json()["order_id"] != mine["order_id"] and alipay.json()["method"] == "alipay"
    again = both_methods.order(buyer_token=mine["buyer_token"])  # WeChat again: its own pending order
    assert again.status_code == 201 and again.json()["order_id"] == mine["order_id"]


# --- refresh_code_url: a new code_url from 100 minutes on, not a second before ----------------------

def test_the_code_url_is_renewed_at_100_minutes_not_before(shop: Shop, clock: FakeClock) -> None:
    clock.freeze()
    order = shop.order()
    clock.advance(100 * 60 - 1)
    assert shop.poll(order)["code_url"] == order["code_url"]
    clock.advance(1)
    assert shop.poll(order)["code_url"] != order["code_url"]
    assert order_row(order).code_url_at == clock()


def core(shop: Shop) -> Any:
    return shop.app.extensions["lbpay.shop"]


def native_calls(shop: Shop) -> int:
    return len([r for r in shop.sandbox.requests_log() if r["path"] == "/v3/pay/transactions/native"])


def test_a_code_url_given_back_unchanged_delays_only_its_own_orders_next_ask(shop: Shop, clock: FakeClock) -> None:
    clock.freeze()
    mine, other = shop.order(), shop.order()  # issued at the same instant
    shop.sandbox.control("POST", "settings", {"code_url_reuse": True})
    clock.advance(101 * 60)
    assert shop.poll(mine)["code_url"] == mine["code_url"] and native_calls(shop) == 3
    clock.advance(60)
    shop.poll(mine)
    assert native_calls(shop) == 3, "WeChat gave this URL back: asked again only at its 2 hours"
    shop.sandbox.control("POST", "settings", {"code_url_reuse": False})
    assert shop.poll(other)["code_url"] != other["code_url"], "the other order is not held back by mine"
    assert order_row(other).code_url_retry_at is None


def test_a_stale_refresh_that_wechat_answers_with_the_current_url_leaves_the_row_alone(
        shop: Shop, clock: FakeClock) -> None:
    from billing.orders import refresh_code_url

    clock.freeze()
    order = shop.order()
    clock.advance(101 * 60)
    stale = order_row(order)  # a poll that read the row, then lost the race to another poll's refresh
    assert shop.poll(order)["code_url"] != order["code_url"]
    fresh = order_row(order)
    shop.sandbox.control("POST", "settings", {"code_url_reuse": True})  # WeChat gives the current URL back
    with models.db.connection_context():
        assert refresh_code_url(core(shop), stale) is False
    row = order_row(order)
    assert (row.code_url, row.code_url_at, row.code_url_retry_at) == (fresh.code_url, fresh.code_url_at, None)


def test_a_refresh_that_races_a_cancel_never_gives_the_closed_order_a_new_code(shop: Shop, clock: FakeClock) -> None:
    from billing.orders import refresh_code_url

    clock.freeze()
    order = shop.order()
    clock.advance(101 * 60)
    stale = order_row(order)  # a poll read it pending; the learner cancels before the poll writes
    shop.sandbox.control("POST", "faults", {"api": {  # the close at WeChat fails: still open there
        "fail_next": 10, "status": 500, "code": "SYSTEM_ERROR",
        "paths": f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}/close"}})
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200
    assert shop.sandbox.state.orders[order["out_trade_no"]].trade_state == "NOTPAY"
    with models.db.connection_context():
        assert refresh_code_url(core(shop), stale) is False
    row = order_row(order)
    assert (row.status, row.code_url, row.code_url_at) == ("closed", stale.code_url, stale.code_url_at)


# --- find_course_for_sale: course ids up to 64 characters ------------------------------------------

def test_a_course_id_of_64_characters_is_sold_and_one_of_65_is_refused_as_malformed(shop: Shop) -> None:
    from billing.courses import save_course

    longest, too_long = "c" * 64, "c" * 65
    with models.db.connection_context():
        save_course(core(shop), course_id=longest, title="长名课程", price_fen=100)
    assert shop.order(longest)["course_id"] == longest
    refused = shop.post("/api/v1/orders", {"course_id": too_long})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "course_not_found"
    assert refused.json()["error"]["detail"] == "course_id must be a kebab-case slug"


# --- close_at_wechat: ORDER_CLOSED is "closed there already"; any other refusal is not a close -------

def close_fault(shop: Shop, order: dict[str, Any], status: int, code: str) -> None:
    shop.sandbox.control("POST", "faults", {"api": {
        "fail_next": 10, "status": status, "code": code,
        "paths": f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}/close"}})


def test_a_late_cancel_that_wechat_answers_order_closed_counts_as_closed_there(shop: Shop, clock: FakeClock) -> None:
    order = shop.order()
    clock.advance(6 * 60)  # past WeChat's 5 minutes: the cancel closes at WeChat at once
    close_fault(shop, order, 400, "ORDER_CLOSED")
    answer = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])
    assert answer.status_code == 200 and answer.json()["status"] == "closed"
    assert order_row(order).wechat_closed_at is not None


def test_a_late_cancel_whose_close_wechat_refuses_is_left_for_the_job(shop: Shop, clock: FakeClock) -> None:
    order = shop.order()
    clock.advance(6 * 60)
    close_fault(shop, order, 400, "INVALID_REQUEST")
    answer = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])
    assert answer.status_code == 200 and answer.json()["status"] == "closed"
    assert order_row(order).wechat_closed_at is None, "not closed at WeChat: the reconcile job tries again"
    with models.db.connection_context():
        failed = [e.detail for e in models.AuditEvent.select().where(models.AuditEvent.action == "wechat.call_failed")]
    assert any("close_order" in str(d) for d in failed)


# --- the Idempotency-Key: 16 to 200 characters, both ends included -----------------------------------

def test_an_idempotency_key_of_16_to_200_characters_is_taken_and_one_outside_is_refused(shop: Shop) -> None:
    def keyed(key: str) -> Any:
        return shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"}, headers={"Idempotency-Key": key})

    for key in ("k" * 16, "k" * 200):
        assert keyed(key).status_code == 201, len(key)
    for key in ("k" * 15, "k" * 201):
        refused = keyed(key)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request", len(key)


# --- the request a key is bound to includes the discount code -------------------------------------

def test_a_key_used_with_one_code_is_not_replayed_for_another(shop: Shop) -> None:
    from billing import discounts

    with models.db.connection_context():
        for code, value in (("SPRINGTEN", 10), ("SPRINGTWENTY", 20)):
            discounts.create(actor="creator@example.com", now=shop.clock(), kind="percent", value=value, code=code,
                             course_id="cpp-primer-5th")
    headers = {"Idempotency-Key": "k-mutants-code-0001"}
    first = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "code": "SPRINGTEN"}, headers=headers)
    assert first.status_code == 201 and first.json()["amount_fen"] == 8910, first.text
    # The same sender (a first order's sender is its address), the same key, another code: not a replay.
    other = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "code": "SPRINGTWENTY"}, headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused", other.text


def test_a_code_given_with_a_pending_order_gets_a_new_order_at_the_codes_price(shop: Shop) -> None:
    from billing import discounts

    with models.db.connection_context():
        discounts.create(actor="creator@example.com", now=shop.clock(), kind="percent", value=10, code="SPRINGTEN",
                         course_id="cpp-primer-5th")
    mine = shop.order()
    assert mine["amount_fen"] == 9900
    cheaper = shop.order(buyer_token=mine["buyer_token"], code="SPRINGTEN")
    assert cheaper["order_id"] != mine["order_id"] and cheaper["amount_fen"] == 8910


def test_a_key_of_an_order_placed_before_keys_were_bound_is_replayed_only_for_its_own_buyer(shop: Shop) -> None:
    headers = {"Idempotency-Key": "k-mutants-legacy-0001"}
    first = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"}, headers=headers).json()
    with models.db.connection_context():  # as migration m0009 left orders made before it
        models.Order.update(idempotency_request=None).where(models.Order.public_id == first["order_id"]).execute()
    stranger = shop.order("rust-monthly")
    for body in ({"course_id": "cpp-primer-5th", "buyer_token": stranger["buyer_token"]},
                 {"course_id": "cpp-primer-5th"}):  # another buyer, or nobody signed
        answer = shop.post("/api/v1/orders", body, headers=headers)
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "idempotency_key_conflict", answer.text
        assert first["order_token"] not in answer.text


# --- _earlier_attempt: an unconfirmed attempt is sent again only while more than 2 minutes are left -----

def test_an_attempt_is_sent_again_until_two_minutes_before_its_time_expire_and_not_at_two(
        shop: Shop, clock: FakeClock) -> None:
    clock.freeze()
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 9, "status": 500, "code": "SYSTEM_ERROR",
                                                    "paths": "/v3/pay/transactions/native"}})
    headers = {"Idempotency-Key": "k-mutants-attempt-0001"}

    def attempt() -> str:
        answer = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"}, headers=headers)
        assert answer.status_code == 503, answer.text  # WeChat answered 500 to each of the client's tries
        with models.db.connection_context():
            return str(models.OrderAttempt.get().out_trade_no)

    first = attempt()
    clock.advance((180 - 2) * 60 - 1)  # orders live 180 minutes here: 2 minutes and 1 second left
    assert attempt() == first
    clock.advance(1)  # exactly 2 minutes left: too near its time_expire to be paid, a new attempt
    assert attempt() != first


# --- poll_after_ms: brisk for the first 5 minutes, four times slower from then on ---------------------

def test_a_pending_order_is_polled_every_half_second_for_five_minutes_then_every_two(
        shop: Shop, clock: FakeClock) -> None:
    clock.freeze()
    order = shop.order()
    clock.advance(5 * 60 - 1)
    assert shop.poll(order)["poll_after_ms"] == 500
    clock.advance(1)
    assert shop.poll(order)["poll_after_ms"] == 2000


# --- wechat_failure's retry_after: 10 s for placing an order, 5 s for a cancel -------------------------

def test_wechat_down_tells_a_buyer_to_retry_in_10_seconds_and_a_cancel_in_5(shop: Shop) -> None:
    def wechat_fails(path: str) -> None:
        shop.sandbox.control("POST", "faults", {"api": {"fail_next": 3, "status": 500, "code": "SYSTEM_ERROR",
                                                        "paths": path}})

    wechat_fails("/v3/pay/transactions/native")
    new = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"})
    assert (new.status_code, new.headers.get("Retry-After")) == (503, "10"), new.text
    with models.db.connection_context():  # no order is written: the event names the attempt's out_trade_no
        [failed] = models.AuditEvent.select().where(models.AuditEvent.action == "wechat.call_failed")
    assert failed.order_id is None and json.loads(failed.detail)["out_trade_no"].startswith("LB"), failed.detail

    older = shop.order()
    with models.db.connection_context():  # an order written before WeChat answered (older releases)
        models.Order.update(code_url=None).where(models.Order.public_id == older["order_id"]).execute()
    wechat_fails("/v3/pay/transactions/native")
    again = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "buyer_token": older["buyer_token"]})
    assert (again.status_code, again.headers.get("Retry-After")) == (503, "10"), again.text

    order = shop.order("rust-monthly")
    wechat_fails(f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}")
    cancel = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])
    assert (cancel.status_code, cancel.headers.get("Retry-After")) == (503, "5"), cancel.text
    assert shop.poll(order)["status"] == "pending"


# --- _create_at_wechat (an order written before WeChat answered, placed again): what each refusal means ------

def test_an_older_order_wechat_refuses_to_place_again_is_closed_waited_for_or_the_shops_to_fix(shop: Shop) -> None:
    native = "/v3/pay/transactions/native"

    def older() -> dict[str, Any]:
        order = shop.order()
        with models.db.connection_context():  # as releases that wrote the order before WeChat answered left it
            models.Order.update(code_url=None).where(models.Order.public_id == order["order_id"]).execute()
        return order

    def again(order: dict[str, Any]) -> Any:
        return shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "buyer_token": order["buyer_token"]})

    def fault(paths: list[str], status: int, code: str, times: int) -> None:
        shop.sandbox.control("POST", "faults", {"api": {"fail_next": times, "status": status, "code": code,
                                                        "paths": paths}})

    # Refused for the order's state (still unpaid at WeChat): the learner is told the order is closed.
    order = older()
    fault([native], 400, "ORDER_CLOSED", 1)
    answer = again(order)
    assert answer.json()["error"]["code"] == "order_closed", answer.text
    # Refused as our own mistake: the shop's to fix, not "closed" and not "retry".
    order = older()
    fault([native], 400, "INVALID_REQUEST", 1)
    answer = again(order)
    assert answer.json()["error"]["code"] == "shop_setup_error" and "Retry-After" not in answer.headers, answer.text
    # Refused, and WeChat cannot be asked what the order's state is: retry in 10 seconds.
    order = older()
    fault([native, f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}"], 400, "ORDER_CLOSED", 2)
    answer = again(order)
    assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "10"), answer.text
    # An answer that is not WeChat's (no signature): WeChat is not to be believed now, retry in 10 seconds.
    order = older()
    shop.sandbox.control("POST", "faults", {"api": {"unsigned_next": 1, "paths": [native]}})
    answer = again(order)
    assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "10"), answer.text


def test_an_older_order_placed_again_gets_its_own_code_url_and_no_other_order_changes(shop: Shop) -> None:
    other, order = shop.order("rust-monthly"), shop.order()
    with models.db.connection_context():
        models.Order.update(code_url=None).where(models.Order.public_id == order["order_id"]).execute()
    again = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "buyer_token": order["buyer_token"]})
    assert again.status_code == 201 and again.json()["order_id"] == order["order_id"], again.text
    assert again.json()["code_url"] and order_row(order).code_url == again.json()["code_url"]
    assert order_row(other).code_url == other["code_url"]


# --- refresh_code_url's edges: asked again at exactly its retry time; never at or after the order's expiry ---

def test_a_code_url_given_back_is_asked_for_again_at_exactly_two_hours_after_issue(
        shop: Shop, clock: FakeClock) -> None:
    clock.freeze()
    order = shop.order()
    shop.sandbox.control("POST", "settings", {"code_url_reuse": True})
    clock.advance(101 * 60)
    assert shop.poll(order)["code_url"] == order["code_url"] and native_calls(shop) == 2
    clock.advance(19 * 60 - 1)
    shop.poll(order)
    assert native_calls(shop) == 2
    clock.advance(1)  # issue + 120 minutes: the code dies now, so WeChat is asked again
    assert shop.poll(order)["code_url"] == order["code_url"] and native_calls(shop) == 3
    row = order_row(order)  # given back at its 2 hours, the URL counts as issued now: its next 2 hours begin
    assert (row.code_url_at, row.code_url_retry_at) == (clock(), None)


def test_a_code_url_is_renewed_up_to_the_orders_last_second_and_not_at_its_expiry(
        shop: Shop, clock: FakeClock) -> None:
    clock.freeze()
    last, expired = shop.order(), shop.order("rust-monthly")  # orders live 180 minutes here
    clock.advance(180 * 60 - 1)
    assert shop.poll(last)["code_url"] != last["code_url"] and native_calls(shop) == 3
    clock.advance(1)
    shop.poll(expired)
    assert native_calls(shop) == 3, "an order at its time_expire is not placed at WeChat again"
    assert order_row(expired).code_url == expired["code_url"]


# --- order_for_token: an order is acted on only with its own token ----------------------------------------

def test_an_order_is_cancelled_only_with_its_own_token(shop: Shop) -> None:
    order, other = shop.order(), shop.order("rust-monthly")
    for token in (other["order_token"], None):  # another order's token, or none at all
        answer = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=token)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "order_not_found", answer.text
    assert order_row(order).status == "pending"
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200


# --- order_view: a poll that finds the payment at WeChat shows the order's own license ------------------

def test_a_payment_found_by_the_poll_is_answered_with_the_orders_own_license(shop: Shop, clock: FakeClock) -> None:
    from test_wechat_billing import paid

    earlier = paid(shop, "rust-monthly")  # another license in the shop
    shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    clock.advance(10)  # the poll asks WeChat once the order is a few seconds old
    view = shop.poll(order)
    assert view["status"] == "fulfilled", view
    assert view["license"] is not None and view["license"]["id"] != earlier["license"]["id"]
    with models.db.connection_context():
        own = models.License.get(models.License.order == order_row(order).id)
    assert view["license"]["id"] == own.license_id


def test_an_order_shows_its_list_price_and_discount_and_one_from_before_discounts_its_amount(shop: Shop) -> None:
    from billing import discounts

    with models.db.connection_context():
        discounts.create(actor="creator@example.com", now=shop.clock(), kind="percent", value=10, code="SPRINGTEN",
                         course_id="cpp-primer-5th")
    cheaper = shop.order(code="SPRINGTEN")
    view = shop.poll(cheaper)
    assert (view["amount_fen"], view["list_price_fen"], view["discount_fen"]) == (8910, 9900, 990), view
    older = shop.order("rust-monthly")
    with models.db.connection_context():  # as orders made before discounts existed are stored
        models.Order.update(list_price_fen=None).where(
            models.Order.public_id == older["order_id"]).execute()
    view = shop.poll(older)
    assert (view["list_price_fen"], view["discount_fen"]) == (view["amount_fen"], 0), view


def test_only_a_pending_unflagged_order_shows_a_code_to_pay_with(shop: Shop) -> None:
    from test_wechat_billing import paid

    fulfilled, cancelled = paid(shop), shop.order("rust-monthly")
    assert shop.post(f"/api/v1/orders/{cancelled['order_id']}/cancel", token=cancelled["order_token"]).status_code == 200
    for order in (fulfilled, cancelled):
        assert order_row(order).code_url is not None  # still stored, never shown again
        view = shop.poll(order)
        assert (view["code_url"], view["qr_svg"]) == (None, None), view["status"]


def test_a_license_is_active_until_its_last_second_and_expired_at_its_end(shop: Shop, clock: FakeClock) -> None:
    from test_wechat_billing import paid

    order = paid(shop, "rust-monthly")  # a subscription: its key ends after one period
    clock.freeze()
    with models.db.connection_context():
        ends = models.License.get(models.License.order == order_row(order).id).expires_at
    clock.advance((ends - clock()).total_seconds() - 1)
    assert shop.poll(order)["license"]["state"] == "active"
    clock.advance(1)
    assert clock() == ends and shop.poll(order)["license"]["state"] == "expired"


def test_the_answers_tag_changes_at_the_very_second_the_license_expires(shop: Shop, clock: FakeClock) -> None:
    from test_wechat_billing import paid

    order = paid(shop, "rust-monthly")
    clock.freeze()
    with models.db.connection_context():
        ends = models.License.get(models.License.order == order_row(order).id).expires_at
    clock.advance((ends - clock()).total_seconds() - 1)
    path = f"/api/v1/orders/{order['order_id']}"
    tag = shop.get(path, token=order["order_token"]).headers["ETag"]
    clock.advance(1)  # expired now: what the client holds is no longer the answer
    answer = shop.get(path, token=order["order_token"], headers={"If-None-Match": tag})
    assert answer.status_code == 200 and answer.json()["license"]["state"] == "expired"


def test_cancelling_one_order_leaves_every_other_pending_order_open(shop: Shop) -> None:
    mine, other = shop.order(), shop.order("rust-monthly")
    assert shop.post(f"/api/v1/orders/{mine['order_id']}/cancel", token=mine["order_token"]).status_code == 200
    assert (order_row(mine).status, order_row(other).status) == ("closed", "pending")
    assert shop.poll(other)["code_url"] == other["code_url"]


def test_a_cancel_at_exactly_five_minutes_closes_at_wechat_at_once(shop: Shop, clock: FakeClock) -> None:
    clock.freeze()
    order = shop.order()
    clock.advance(5 * 60)
    assert shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"]).status_code == 200
    assert [r for r in shop.sandbox.requests_log() if r["path"].endswith("/close")]
    assert order_row(order).wechat_closed_at == clock()
