"""What the database is asked to do at scale, read from its own query plans, and the request hooks a
machine's request runs.

The dashboard of either book (live, or the simulator's) and the live start's check for simulator
orders must never walk the order table: at a million orders that is seconds, cold. Each of their
statements on "order" is planned here by the database itself (SQLite's EXPLAIN QUERY PLAN;
PostgreSQL's EXPLAIN with sequential scans priced out, so a plan with one has no index it could use).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Callable

import pytest
from peewee import SqliteDatabase
from conftest import Shop

import models
from billing import reports, rollup
from billing.sandbox_orders import count_sandbox_orders

# Walks of an index on "order" that stop early: newest first under a LIMIT, where every order of the
# live book qualifies (live orders are all but a few), or a partial index holding only what is asked for.
LIVE_WALKS = {"order_created_at", "order_flagged_created", "order_sandbox_created"}
SANDBOX_WALKS = {"order_flagged_created", "order_sandbox_created"}


def statements_of(caplog: pytest.LogCaptureFixture, run: Callable[[], Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements on "order" that ``run`` sends (peewee logs each at DEBUG with its parameters)."""
    caplog.set_level(logging.DEBUG, logger="peewee")
    caplog.clear()
    run()
    found = []
    for record in caplog.records:
        if record.name == "peewee" and isinstance(record.msg, tuple):
            sql, params = record.msg
            if re.search(r'(FROM|JOIN)\s+"order"', sql):
                found.append((sql, tuple(params or ())))
    return found


def order_walks(sql: str, params: tuple[Any, ...]) -> list[str]:
    """How the database reads "order" for this statement: a SEARCH is fine, each walk is named."""
    database = models.db.obj
    aliases = set(re.findall(r'"order" AS "(\w+)"', sql)) | {"order"}
    if isinstance(database, SqliteDatabase):
        plan = [row[3] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
        walks = []
        for step in plan:
            match = re.match(r"SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?", step)
            if match and match.group(1) in aliases:
                walks.append(match.group(2) or "the table")
        return walks
    with models.db.atomic():
        database.execute_sql("SET LOCAL enable_seqscan = off")
        plan = [row[0] for row in database.execute_sql("EXPLAIN " + sql, params).fetchall()]
    return ["the table" for step in plan if re.search(r'Seq Scan on "?order"?\b', step)]


@pytest.mark.parametrize("simulator_book", [False, True], ids=["live book", "sandbox book"])
def test_the_dashboard_never_walks_the_order_table(shop: Shop, caplog: pytest.LogCaptureFixture,
                                                   simulator_book: bool) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with models.db.connection_context():
        rollup.catch_up(now)  # as the migration and the every-minute job leave it: a mark to count from
    shop.order()  # one event past the mark: its day is recounted, through the time indexes
    with models.db.connection_context():
        statements = statements_of(caplog, lambda: reports.dashboard(now, sandbox=simulator_book))
        assert any("ORDER BY" in sql and "LIMIT" in sql for sql, _ in statements)  # the recent orders are among them
        allowed = SANDBOX_WALKS if simulator_book else LIVE_WALKS
        for sql, params in statements:
            walks = order_walks(sql, params)
            assert set(walks) <= allowed, f"{walks} for {sql}"


def test_the_live_start_counts_simulator_orders_through_their_own_index(
        shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    with models.db.connection_context():
        statements = statements_of(caplog, count_sandbox_orders)
        assert statements
        for sql, params in statements:
            assert set(order_walks(sql, params)) <= {"order_sandbox_created"}, sql
        assert count_sandbox_orders().total == 0


def test_a_machine_request_skips_the_hooks_kept_for_people(app: Any, client: Any) -> None:
    from web.pages import PEOPLE_HOOKS

    names = [f.__name__ for f in app.before_request_funcs[None] + app.after_request_funcs[None]]
    assert not PEOPLE_HOOKS & set(names)
    assert names.count("before_for_people") == 1 and names.count("after_for_people") == 1
    # They still guard people's pages: a console form posted from another site is refused.
    assert client.post("/admin/login", data={}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 400
