"""The numbers of billing/limits.py's table, as a client meets them over HTTP (issue 24, `tests/mutation.py`).

The other limit tests read their numbers from the table itself, so a changed number changed the test
with it. Here each rule is written out as documented: ``count`` requests at one instant, the next one
429 with ``Retry-After`` = seconds ÷ count rounded up, and exactly one step later exactly one more.
docs/mutation/README.md lists each mutant these tests kill.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import pytest
import requests
from conftest import Shop, start_shop
from test_admin import Console
from test_learner_api import mail_shop, smtp  # noqa: F401  (fixtures: a shop that sends mail)

import models

COURSE = {"course_id": "cpp-primer-5th"}


@pytest.fixture
def proxied(tmp_path: Any, keys: Any, sandbox: Any, clock: Any) -> Iterator[Shop]:
    """The live shop behind one proxy hop, so each request names its client address; time stands still."""
    started = start_shop(tmp_path, keys, sandbox, clock, PROXY_HOPS="1")
    started.app.config["SESSION_COOKIE_SECURE"] = False  # the console over plain HTTP on loopback
    clock.freeze()
    yield started
    started.server.stop()


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def _sign_in(shop: Shop, address: str, email: str) -> requests.Response:
    console = Console(shop)
    console.session.headers.update(_from(address))
    return console.post("/admin/login", {"email": email, "password": "x" * 12})


def _ask_link(shop: Shop, address: str, email: str) -> requests.Response:
    console = Console(shop)
    console.session.headers.update(_from(address))
    return console.post("/admin/login/link", {"email": email})


Send = Callable[[Shop, int], requests.Response]

# name → (one request numbered n, the answer it gets while allowed, count, seconds), as documented.
RULES: dict[str, tuple[Send, int, int, int]] = {
    "order misses": (lambda shop, n: shop.get("/api/v1/orders/ord_doesnotexist", token="wrong-token",
                                              headers=_from("198.51.100.1")), 404, 30, 60),
    "license status": (lambda shop, n: shop.get("/api/v1/licenses/lic_unknown/status",
                                                headers=_from("198.51.100.2")), 404, 120, 60),
    "revocation list": (lambda shop, n: shop.get("/api/v1/revocations", headers=_from("198.51.100.3")), 200, 60, 60),
    "course structure": (lambda shop, n: shop.get("/provider/courses/cpp-primer-5th/structure",
                                                  headers=_from("198.51.100.4")), 200, 60, 60),
    "license mail resend per address": (
        lambda shop, n: shop.post("/api/v1/licenses/resend", {"email": f"learner{n}@example.com"},
                                  headers=_from("198.51.100.5")), 202, 10, 600),
    "sign-in per account and address": (
        lambda shop, n: _sign_in(shop, "198.51.100.6", "creator@example.com"), 401, 10, 600),
    "sign-in per address": (lambda shop, n: _sign_in(shop, "198.51.100.7", f"guess{n}@example.com"), 401, 30, 600),
    # Ten attempts from each of six addresses at most: only the account's unknown-browser limit refuses.
    "sign-in of unknown browsers per account": (
        lambda shop, n: _sign_in(shop, f"198.51.100.{10 + n // 9}", "creator@example.com"), 401, 50, 1500),
    "sign-in link per account": (lambda shop, n: _ask_link(shop, f"198.51.100.{100 + n}", "creator@example.com"),
                                 200, 3, 3600),
    "sign-in link per address": (lambda shop, n: _ask_link(shop, "198.51.100.8", f"someone{n}@example.com"),
                                 200, 10, 3600),
}


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_each_limit_lets_its_count_through_then_one_more_per_step(proxied: Shop, rule: tuple[Send, int, int, int]
                                                                   ) -> None:
    send, allowed, count, seconds = rule
    answers = [send(proxied, n).status_code for n in range(count)]
    assert answers == [allowed] * count
    refused = send(proxied, count)
    assert refused.status_code == 429, refused.text[:300]
    assert int(refused.headers["Retry-After"]) == math.ceil(seconds / count)

    proxied.clock.advance(seconds / count)

    assert send(proxied, count + 1).status_code == allowed
    assert send(proxied, count + 2).status_code == 429


def test_twenty_unpaid_orders_from_one_address_and_no_more(proxied: Shop) -> None:
    for _ in range(20):
        assert proxied.post("/api/v1/orders", COURSE, headers=_from("198.51.100.9")).status_code == 201
        proxied.clock.advance(6)  # one order's step of the orders-per-minute limit
    refused = proxied.post("/api/v1/orders", COURSE, headers=_from("198.51.100.9"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_pending_orders"


def test_five_unpaid_orders_per_buyer_and_no_more(proxied: Shop) -> None:
    from billing.courses import save_course

    with models.db.connection_context():
        for n in range(6):
            save_course(proxied.app.extensions["lbpay.shop"], course_id=f"course-{n}", title=f"Course {n}",
                        price_fen=100)
    buyer = proxied.post("/api/v1/orders", {"course_id": "course-0"}, headers=_from("198.51.100.20")).json()
    for n in range(1, 5):  # each from an address of its own: only the buyer's cap can refuse
        placed = proxied.post("/api/v1/orders", {"course_id": f"course-{n}", "buyer_token": buyer["buyer_token"]},
                              headers=_from(f"198.51.100.{20 + n}"))
        assert placed.status_code == 201, placed.text
    refused = proxied.post("/api/v1/orders", {"course_id": "course-5", "buyer_token": buyer["buyer_token"]},
                           headers=_from("198.51.100.30"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_pending_orders"


def test_a_sign_in_with_the_longest_address_is_counted_not_a_500(proxied: Shop) -> None:
    # The limit's row key is cut to the key column's 200 characters; PostgreSQL refuses a longer one.
    longest = "a" * 64 + "@" + "b" * 185 + ".com"
    assert len(longest) == 254
    answers = [_sign_in(proxied, "198.51.100.40", longest).status_code for _ in range(11)]
    assert answers == [401] * 10 + [429]


# --- RESEND_PER_ADDRESS written out: 3 mails an hour per address, one more every 20 minutes ---------------

def test_an_address_gets_three_license_mails_then_one_more_every_twenty_minutes(mail_shop: Shop) -> None:
    from learner_helpers import buy, outbox

    buy(mail_shop, email="learner@example.com")
    mail_shop.clock.freeze()
    before = len(outbox())

    def resend() -> None:  # always 202: the drop is silent, so the outbox tells
        assert mail_shop.post("/api/v1/licenses/resend", {"email": "learner@example.com"}).status_code == 202

    for _ in range(4):
        resend()
    assert len(outbox()) == before + 3
    mail_shop.clock.advance(20 * 60 - 1)
    resend()
    assert len(outbox()) == before + 3
    mail_shop.clock.advance(1)
    resend()
    assert len(outbox()) == before + 4
