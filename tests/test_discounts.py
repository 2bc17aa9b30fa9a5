"""Discount codes and launch prices, end to end: our app on loopback, the WeChat Pay sandbox over TLS."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import requests
from conftest import Shop

import models
from billing import discounts

COURSE = "cpp-primer-5th"  # list price 9900 fen


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"PROXY_HOPS": "1"}  # each racing buyer comes from an address of its own


def make(shop: Shop, **fields: Any) -> int:
    with models.db.connection_context():
        return discounts.create(actor="creator@example.com", now=shop.clock(), **fields).id


def order(shop: Shop, n: int = 1, **fields: Any) -> requests.Response:
    return requests.post(shop.url + "/api/v1/orders", json={"course_id": COURSE, **fields}, timeout=30,
                         headers={"X-Forwarded-For": f"10.9.{n >> 8 & 255}.{n & 255}"})


def wechat_total(shop: Shop, out_trade_no: str) -> int:
    answer = shop.sandbox.control("GET", f"orders/{out_trade_no}")
    assert answer.status_code == 200, answer.text
    return answer.json()["total"]


def audit_actions(action: str) -> list[dict]:
    import json
    with models.db.connection_context():
        return [json.loads(e.detail) for e in models.AuditEvent.select().where(models.AuditEvent.action == action)]


def test_a_code_lowers_the_amount_wechat_receives_and_the_order_shows_list_discount_and_paid(shop: Shop) -> None:
    make(shop, kind="percent", value=20, code="STUDYGROUP", course_id=COURSE)
    placed = order(shop, code=" studygroup ")  # typed in any case, spaces around
    assert placed.status_code == 201, placed.text
    view = placed.json()
    assert (view["list_price_fen"], view["discount_fen"], view["amount_fen"]) == (9900, 1980, 7920)
    assert wechat_total(shop, view["out_trade_no"]) == 7920  # what the learner's phone is asked to pay

    shop.sandbox.pay(view["out_trade_no"])
    paid = shop.wait_for_status(view, "fulfilled")
    assert paid["status"] == "fulfilled" and paid["license"] is not None
    assert (paid["list_price_fen"], paid["discount_fen"], paid["amount_fen"]) == (9900, 1980, 7920)
    created = audit_actions("order.created")[-1]
    assert created["code"] == "STUDYGROUP" and created["discount_fen"] == 1980


def test_a_fixed_code_for_every_course_never_takes_the_last_fen_unless_it_covers_all(shop: Shop) -> None:
    make(shop, kind="fixed", value=9899, code="ALMOST")
    view = order(shop, code="ALMOST").json()
    assert view["amount_fen"] == 1 and wechat_total(shop, view["out_trade_no"]) == 1
    rust = requests.post(shop.url + "/api/v1/orders", json={"course_id": "rust-monthly", "code": "ALMOST"},
                         timeout=15, headers={"X-Forwarded-For": "10.8.0.1"})
    assert rust.status_code == 201 and rust.json()["amount_fen"] == 0  # 2900 fen list price: free


def test_twenty_buyers_race_for_the_last_use_and_exactly_one_gets_it(shop: Shop) -> None:
    code_id = make(shop, kind="percent", value=50, code="LASTONE", max_uses=3)
    for n in (1, 2):
        assert order(shop, n, code="LASTONE").status_code == 201
    answers: list[requests.Response] = []
    start = threading.Barrier(20)

    def buy(n: int) -> None:
        start.wait()
        answers.append(order(shop, 100 + n, code="LASTONE"))

    threads = [threading.Thread(target=buy, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 19, [a.text for a in answers if a.status_code not in (201, 409)]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"code_exhausted"}
    with models.db.connection_context():
        assert models.Order.select().where(models.Order.discount == code_id).count() == 3
    # Every WeChat order made for a buyer who lost inside the write lock was closed at once.
    for lost in audit_actions("order.discount_refused"):
        assert shop.sandbox.control("GET", f"orders/{lost['out_trade_no']}").json()["trade_state"] == "CLOSED"


def test_a_cancelled_or_expired_unpaid_order_gives_its_use_back(shop: Shop) -> None:
    make(shop, kind="fixed", value=1000, code="ONEUSE", max_uses=1)
    first = order(shop, 1, code="ONEUSE").json()
    refused = order(shop, 2, code="ONEUSE")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "code_exhausted"
    assert refused.json()["error"]["message_zh"] == "优惠码已被用完。"
    cancelled = shop.post(f"/api/v1/orders/{first['order_id']}/cancel", token=first["order_token"])
    assert cancelled.status_code == 200, cancelled.text
    second = order(shop, 3, code="ONEUSE")
    assert second.status_code == 201 and second.json()["amount_fen"] == 8900
    assert order(shop, 4, code="ONEUSE").status_code == 409
    shop.clock.advance((dt.datetime.fromisoformat(second.json()["expires_at"]) - shop.clock()).total_seconds() + 1)
    assert order(shop, 5, code="ONEUSE").status_code == 201  # the unpaid order expired: its use came back


def test_a_launch_price_ends_on_time(shop: Shop) -> None:
    made = shop.clock()
    make(shop, kind="launch", value=4900, course_id=COURSE, ends_at=made + dt.timedelta(hours=1))
    during = order(shop, 1).json()
    assert (during["list_price_fen"], during["discount_fen"], during["amount_fen"]) == (9900, 5000, 4900)
    assert wechat_total(shop, during["out_trade_no"]) == 4900
    shop.clock.freeze()  # the boundary to the second, however long the orders take on a busy machine
    shop.clock.advance(3600 - (shop.clock() - made).total_seconds() - 1)
    assert order(shop, 2).json()["amount_fen"] == 4900  # its last second
    shop.clock.advance(1)
    after = order(shop, 3).json()
    assert (after["amount_fen"], after["discount_fen"]) == (9900, 0)
    assert wechat_total(shop, after["out_trade_no"]) == 9900


def test_a_launch_price_for_the_first_buyers_only(shop: Shop) -> None:
    make(shop, kind="launch", value=5900, course_id=COURSE, max_uses=2)
    first, second = order(shop, 1).json(), order(shop, 2).json()
    assert first["amount_fen"] == second["amount_fen"] == 5900
    assert order(shop, 3).json()["amount_fen"] == 9900
    # A code cheaper than the launch price wins; one dearer is not used up.
    make(shop, kind="percent", value=10, code="TENOFF")
    shop.post(f"/api/v1/orders/{first['order_id']}/cancel", token=first["order_token"])
    with_code = order(shop, 4, code="TENOFF").json()
    assert with_code["amount_fen"] == 5900 and with_code["discount_fen"] == 4000


def test_a_100_percent_code_issues_a_free_license_without_wechat(shop: Shop) -> None:
    make(shop, kind="percent", value=100, code="GIFT", course_id=COURSE, max_uses=5)
    before = len([r for r in shop.sandbox.requests_log() if r["path"] == "/v3/pay/transactions/native"])
    placed = order(shop, code="GIFT", email="friend@example.com")
    assert placed.status_code == 201, placed.text
    view = placed.json()
    assert view["status"] == "fulfilled" and view["final"] is True and view["code_url"] is None
    assert (view["list_price_fen"], view["discount_fen"], view["amount_fen"]) == (9900, 9900, 0)
    assert view["license"]["plan"] == "one_time" and view["out_trade_no"].startswith("FREE")
    assert shop.poll(view)["license"]["id"] == view["license"]["id"]
    after = len([r for r in shop.sandbox.requests_log() if r["path"] == "/v3/pay/transactions/native"])
    assert after == before  # WeChat never heard of it
    assert audit_actions("order.free")[-1]["code"] == "GIFT"
    with models.db.connection_context():
        mail = models.MailOutbox.get(models.MailOutbox.to == "friend@example.com")
        assert mail.kind == "license"


@pytest.mark.parametrize(("setup", "code", "error"), [
    ({"kind": "percent", "value": 10, "code": "RUSTONLY", "course_id": "rust-monthly"}, "RUSTONLY", "code_wrong_course"),
    ({"kind": "percent", "value": 10, "code": "OLD", "ends_at": "past"}, "OLD", "code_expired"),
    ({"kind": "percent", "value": 10, "code": "SOON", "starts_at": "future"}, "SOON", "code_not_started"),
    (None, "NOSUCH", "code_not_found"),
])
def test_a_refused_code_says_why_in_chinese_and_english_and_nothing_reaches_wechat(
        shop: Shop, setup: dict | None, code: str, error: str) -> None:
    if setup is not None:
        when = {"past": shop.clock() - dt.timedelta(seconds=1), "future": shop.clock() + dt.timedelta(days=1)}
        fields = {k: when.get(v, v) if isinstance(v, str) else v for k, v in setup.items()}
        if "ends_at" in fields:
            fields["starts_at"] = shop.clock() - dt.timedelta(days=1)
        make(shop, **fields)
    answer = order(shop, code=code)
    assert answer.status_code in (404, 409) and answer.json()["error"]["code"] == error
    assert answer.json()["error"]["message_zh"] and answer.json()["error"]["message_en"]
    assert not [r for r in shop.sandbox.requests_log() if r["path"] == "/v3/pay/transactions/native"]


def test_a_paused_code_is_refused_and_a_one_per_buyer_code_is_used_once(shop: Shop) -> None:
    paused = make(shop, kind="percent", value=10, code="PAUSEME")
    with models.db.connection_context():
        discounts.set_paused(paused, True, actor="creator@example.com", now=shop.clock())
    assert order(shop, code="PAUSEME").json()["error"]["code"] == "code_expired"
    make(shop, kind="percent", value=10, code="ONCE", once_per_buyer=True)
    first = order(shop, 1, code="ONCE", email="a@example.com").json()
    again = order(shop, 2, code="ONCE", buyer_token=first["buyer_token"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "code_already_used"
    by_mail = order(shop, 3, code="ONCE", email="A@example.com")
    assert by_mail.json()["error"]["code"] == "code_already_used"
    assert order(shop, 4, code="ONCE", email="b@example.com").status_code == 201


def test_guessing_codes_from_one_address_is_refused_for_a_while(shop: Shop) -> None:
    make(shop, kind="percent", value=50, code="REALCODE")
    answers = [order(shop, 7, code=f"GUESS{n:03d}").status_code for n in range(11)]
    assert answers == [404] * 10 + [429]
    assert order(shop, 7, code="REALCODE").status_code == 429  # even the right one, until the wait is over
    assert order(shop, 8, code="REALCODE").status_code == 201  # another address is not held up
    shop.clock.advance(60)
    assert order(shop, 7, code="REALCODE").status_code == 201
