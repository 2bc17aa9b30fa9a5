"""`POLL_QUERIES_PER_PROCESS` of billing/limits.py as written in its table, over HTTP (issue 24, round 2).

The budget of WeChat queries that learners' status polls may make is kept in the process's memory
and measured on the monotonic clock, not the shop's: the test stands that clock still (as the shop's
``clock`` fixture stands the shop's still), so the count does not depend on the machine's speed.
docs/mutation/README.md lists the mutants this test kills.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Shop

from billing import reconcile


def queries_of(shop: Shop, orders: list[dict[str, Any]]) -> int:
    """How many times our app asked the sandbox about these orders."""
    ours = {f"/v3/pay/transactions/out-trade-no/{order['out_trade_no']}" for order in orders}
    return sum(1 for r in shop.sandbox.requests_log() if r["method"] == "GET" and r["path"].split("?")[0] in ours)


def test_status_polls_ask_wechat_forty_times_then_one_more_every_twentieth_of_a_second(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    # The rule as documented: 40 queries in 2 seconds, so 40 at one instant and one more each 0.05 s.
    instant = [1000.0]
    monkeypatch.setattr(reconcile.POLL_BUDGET, "clock", lambda: instant[0])
    monkeypatch.setattr(reconcile.POLL_BUDGET, "due", None)  # full, whatever earlier tests in this process took
    shop.clock.freeze()
    orders = [shop.order() for _ in range(10)]  # new orders: 10 a minute from one address
    shop.clock.advance(60)
    orders += [shop.order() for _ in range(10)]  # 20 pending at once from one address, the most allowed
    assert queries_of(shop, orders) == 0

    shop.clock.advance(3)  # a poll asks WeChat about an order 3 s old or more, once each 8 s
    for order in orders:
        shop.poll(order)
    shop.clock.advance(8)
    for order in orders:
        shop.poll(order)
    assert queries_of(shop, orders) == 40
    shop.clock.advance(8)  # every order may be asked about again, but the budget is spent
    shop.poll(orders[0])
    assert queries_of(shop, orders) == 40

    instant[0] += 0.05  # one query's worth of the budget comes back
    for order in orders[1:3]:
        shop.poll(order)
    assert queries_of(shop, orders) == 41
