"""The hot paths write as little as the work needs: one transaction per order, none per status poll."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import Shop


# How a write transaction begins: SQLite's BEGIN IMMEDIATE, PostgreSQL's write lock (database.write_transaction).
WRITE_BEGINS = ("BEGIN IMMEDIATE", "pg_advisory_xact_lock")


def writes(caplog: pytest.LogCaptureFixture) -> int:
    """Write transactions begun since the log was last cleared (peewee logs every statement at DEBUG)."""
    return sum(1 for r in caplog.records if r.name == "peewee" and any(b in str(r.msg) for b in WRITE_BEGINS))


@pytest.fixture
def sql_log(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.DEBUG, logger="peewee")
    return caplog


def test_an_order_is_placed_in_one_write_transaction(shop: Shop, sql_log: pytest.LogCaptureFixture) -> None:
    shop.order()  # the first order of a process opens what it needs once
    sql_log.clear()
    shop.order(email="learner@example.com")
    assert writes(sql_log) == 1  # buyer, order, audit events and the address's limit: together, after WeChat


def test_polling_a_fulfilled_or_fresh_order_writes_nothing(shop: Shop, sql_log: pytest.LogCaptureFixture) -> None:
    paid, fresh = shop.order(), shop.order()
    shop.sandbox.pay(paid["out_trade_no"])
    shop.wait_for_status(paid, "fulfilled")
    shop.clock.freeze()  # the fresh order stays too fresh to ask WeChat about, however slowly the polls go
    sql_log.clear()
    for _ in range(20):
        assert shop.poll(paid)["status"] == "fulfilled"
        assert shop.poll(fresh)["status"] == "pending"
    assert writes(sql_log) == 0


def test_polling_a_waiting_order_writes_only_when_it_asks_wechat(shop: Shop, sql_log: pytest.LogCaptureFixture) -> None:
    order = shop.order()
    shop.clock.freeze()
    shop.clock.advance(5)
    sql_log.clear()
    for _ in range(20):
        assert shop.poll(order)["status"] == "pending"
    asked = writes(sql_log)
    assert 1 <= asked <= 2  # claiming the query (and what WeChat said), once per interval, not per poll
