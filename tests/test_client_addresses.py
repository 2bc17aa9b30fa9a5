"""Per-address limits count one subscriber as one client, whichever address family it speaks (issue 24).

An IPv6 subscriber is handed a whole /64 and may pick a new address in it for every request, so
every per-address limit counts IPv6 clients by their /64; an IPv4-mapped address (``::ffff:a.b.c.d``,
what a dual-stack socket reports for an IPv4 peer) is the IPv4 address it carries.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
from conftest import Shop, start_shop

from billing import limits

COURSE = {"course_id": "cpp-primer-5th"}


@pytest.fixture
def proxied(tmp_path: Any, keys: Any, sandbox: Any, clock: Any) -> Iterator[Shop]:
    """The live shop behind one proxy hop, so each request can name its own client address."""
    started = start_shop(tmp_path, keys, sandbox, clock, PROXY_HOPS="1")
    clock.freeze()
    yield started
    started.server.stop()


def _in_one_64(n: int) -> str:
    return f"2001:db8:1:2:{n:x}:{n * 7:x}:{n * 13:x}:{n + 1:x}"


def _mapped_and_plain(n: int) -> str:
    return "::ffff:10.1.1.1" if n % 2 else "10.1.1.1"


ONE_CLIENT: dict[str, Callable[[int], str]] = {"one /64": _in_one_64, "IPv4 and IPv4-mapped": _mapped_and_plain}


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


@pytest.mark.parametrize("address", ONE_CLIENT.values(), ids=ONE_CLIENT.keys())
def test_new_orders_are_limited_per_ipv6_64_and_mapped_ipv4(proxied: Shop, address: Callable[[int], str]) -> None:
    count = limits.ORDERS_PER_CLIENT.count
    answers = [proxied.post("/api/v1/orders", COURSE, headers=_from(address(n))).status_code
               for n in range(count + 1)]
    assert answers == [201] * count + [429]
    # Another /64 (another subscriber) is a client of its own.
    assert proxied.post("/api/v1/orders", COURSE, headers=_from("2001:db8:1:3::1")).status_code == 201


@pytest.mark.parametrize("address", ONE_CLIENT.values(), ids=ONE_CLIENT.keys())
def test_pending_orders_are_capped_per_ipv6_64(proxied: Shop, address: Callable[[int], str]) -> None:
    cap = limits.PENDING_ORDERS_PER_CLIENT
    for n in range(cap):
        assert proxied.post("/api/v1/orders", COURSE, headers=_from(address(n))).status_code == 201
        proxied.clock.advance(limits.ORDERS_PER_CLIENT.step)
    refused = proxied.post("/api/v1/orders", COURSE, headers=_from(address(cap)))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_pending_orders"


@pytest.mark.parametrize("address", ONE_CLIENT.values(), ids=ONE_CLIENT.keys())
def test_order_misses_are_counted_per_ipv6_64(proxied: Shop, address: Callable[[int], str]) -> None:
    count = limits.ORDER_MISSES_PER_CLIENT.count
    answers = [proxied.get("/api/v1/orders/ord_doesnotexist", token="wrong-token",
                           headers=_from(address(n))).status_code for n in range(count + 1)]
    assert answers == [404] * count + [429]


@pytest.mark.parametrize("address", ONE_CLIENT.values(), ids=ONE_CLIENT.keys())
def test_license_status_is_limited_per_ipv6_64(proxied: Shop, address: Callable[[int], str]) -> None:
    count = limits.STATUS_PER_CLIENT.count
    answers = [proxied.get("/api/v1/licenses/lic_unknown/status", headers=_from(address(n))).status_code
               for n in range(count + 1)]
    assert 429 not in answers[:count] and answers[-1] == 429


@pytest.mark.parametrize("address", ONE_CLIENT.values(), ids=ONE_CLIENT.keys())
def test_resend_is_limited_per_ipv6_64(proxied: Shop, address: Callable[[int], str]) -> None:
    count = limits.RESEND_PER_CLIENT.count
    answers = [proxied.post("/api/v1/licenses/resend", {"email": f"learner{n}@example.com"},
                            headers=_from(address(n))).status_code for n in range(count + 1)]
    assert answers == [202] * count + [429]


@pytest.mark.parametrize("address", ONE_CLIENT.values(), ids=ONE_CLIENT.keys())
def test_sign_in_attempts_are_limited_per_ipv6_64(proxied: Shop, address: Callable[[int], str]) -> None:
    from test_admin import Console

    proxied.app.config["SESSION_COOKIE_SECURE"] = False
    count = limits.SIGN_IN_PER_CLIENT.count
    answers = []
    for n in range(count + 1):
        console = Console(proxied)
        console.session.headers.update(_from(address(n)))
        # A different account each time: only the per-address limit can refuse.
        answers.append(console.post("/admin/login", {"email": f"guess{n}@example.com", "password": "x" * 12})
                       .status_code)
    assert answers == [401] * count + [429]


@pytest.mark.parametrize(("given", "counted"), [
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("::ffff:10.1.1.1", "10.1.1.1"),
    ("::ffff:a01:101", "10.1.1.1"),
    ("10.1.1.1", "10.1.1.1"),
    ("not an address", "not an address"),
    (None, None),
])
def test_the_one_function_that_names_a_client(given: str | None, counted: str | None) -> None:
    assert limits.client(given) == counted


def test_a_valid_order_token_is_answered_after_others_missed_from_the_same_address(proxied: Shop) -> None:
    # Issue 24: a campus NAT is many learners; one guesser's misses must not lock out a learner whose
    # token is right (a token is 256 bits: a right one is never a guess).
    nat = "198.51.100.200"
    order = proxied.post("/api/v1/orders", COURSE, headers=_from(nat)).json()
    count = limits.ORDER_MISSES_PER_CLIENT.count
    misses = [proxied.get("/api/v1/orders/ord_doesnotexist", token="wrong-token", headers=_from(nat)).status_code
              for _ in range(count + 1)]
    assert misses[-1] == 429
    mine = proxied.get(f"/api/v1/orders/{order['order_id']}", token=order["order_token"], headers=_from(nat))
    assert mine.status_code == 200 and mine.json()["order_id"] == order["order_id"]
    cancel = proxied.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"],
                          headers=_from(nat))
    assert cancel.status_code == 200, cancel.text
    guess = proxied.get(f"/api/v1/orders/{order['order_id']}", token="wrong-token", headers=_from(nat))
    assert guess.status_code == 429  # the guesser is still refused
