"""The one rate-limit algorithm (billing.limits.decide): a burst of ``count``, refilled evenly over ``seconds``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import pytest
from conftest import database_url_for
from database import write_transaction

import models
from billing.errors import BillingError
from billing.limits import (LocalBucket, Rule, decide, forgive, key, retry_after, take, take_all, throttle,
                            wait_for)


def spend(rule: Rule, at: float, times: int, due: float | None = None) -> tuple[float | None, list[float]]:
    waits = []
    for _ in range(times):
        new_due, wait = decide(due, at, rule)
        waits.append(wait)
        if wait == 0:
            due = new_due
    return due, waits


@pytest.mark.parametrize("rule", [Rule(10, 60), Rule(3, 3600), Rule(120, 60), Rule(1, 5)])
def test_a_full_bucket_lets_count_through_then_says_one_step(rule: Rule) -> None:
    due, waits = spend(rule, 1000.0, rule.count + 1)
    assert waits[:-1] == [0.0] * rule.count
    assert waits[-1] == pytest.approx(rule.step)
    assert retry_after(waits[-1]) == max(1, round(rule.step + 0.4999))


def test_a_refused_request_costs_nothing_and_the_bucket_refills_evenly() -> None:
    rule = Rule(10, 60)
    due, _ = spend(rule, 0.0, 10)
    assert decide(due, 0.0, rule) == (due, pytest.approx(6.0))
    assert decide(due, 5.9, rule)[1] == pytest.approx(0.1)
    assert decide(due, 6.0, rule)[1] == 0.0  # one step later, exactly one more
    _, waits = spend(rule, 60.0, 11, due)  # after `seconds`, a full burst again
    assert waits.count(0.0) == 10


def test_an_old_due_means_a_full_bucket() -> None:
    assert decide(5.0, 1000.0, Rule(2, 10)) == (1005.0, 0.0)


def test_the_in_memory_bucket_uses_the_same_rule() -> None:
    now = [0.0]
    bucket = LocalBucket(Rule(4, 2), clock=lambda: now[0])
    assert [bucket.take() for _ in range(5)] == [True] * 4 + [False]
    now[0] = 0.5
    assert [bucket.take() for _ in range(2)] == [True, False]


# --- the stored buckets (billing.limits.take on the database of the run: SQLite, or PostgreSQL) ---------

TODAY = dt.datetime(2026, 12, 6, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)  # an epoch near 1.8e9 seconds


@pytest.fixture
def limits_db(tmp_path: Path) -> Iterator[None]:
    """The models bound to this test's own database (a SQLite file, or a PostgreSQL schema), tables made."""
    from database import open_database

    database = open_database(database_url_for(tmp_path), str(tmp_path))
    models.db.initialize(database)
    with models.db.connection_context():
        models.create_tables()
        yield
    database.close()


def test_a_stored_bucket_gives_count_then_refuses_for_one_step_at_todays_epoch(limits_db: None) -> None:
    # A 4-byte float for ``due`` keeps 128-second steps at this epoch: the eleventh went through.
    rule = Rule(10, 60)
    with write_transaction():
        waits = [take("orders:192.0.2.7", rule, TODAY) for _ in range(11)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(rule.step, abs=1e-6)
    assert wait_for("orders:192.0.2.7", rule, TODAY) == pytest.approx(rule.step, abs=1e-6)
    later = TODAY + dt.timedelta(seconds=rule.step)
    with write_transaction():
        assert take("orders:192.0.2.7", rule, later) == 0.0  # one step later, exactly one more
        assert take("orders:192.0.2.7", rule, later) == pytest.approx(rule.step, abs=1e-6)
    due = models.RateLimit.get_by_id("orders:192.0.2.7").due
    assert due == decide(TODAY.timestamp() + 60, later.timestamp(), rule)[0]  # to the last bit, as decide says


def test_take_all_takes_from_every_key_or_from_none(limits_db: None) -> None:
    wide, narrow = Rule(10, 60), Rule(2, 60)
    checks = [("sign-in-ip:192.0.2.7", wide), ("sign-in-account:a@example.com", narrow)]
    with write_transaction():
        assert [take_all(checks, TODAY) for _ in range(2)] == [0.0, 0.0]
        before = {row.key: row.due for row in models.RateLimit.select()}
        assert take_all(checks, TODAY) == pytest.approx(narrow.step, abs=1e-6)
    assert {row.key: row.due for row in models.RateLimit.select()} == before  # the wide key kept its token
    assert wait_for("sign-in-ip:192.0.2.7", wide, TODAY) == 0.0
    with write_transaction():
        forgive("sign-in-account:a@example.com")
        assert take_all(checks, TODAY) == 0.0


def test_throttle_refuses_with_the_wait_and_counts_nothing_when_refused(limits_db: None) -> None:
    rule = Rule(3, 30)
    for _ in range(3):
        throttle("status", "192.0.2.7", rule, TODAY)
    with pytest.raises(BillingError) as refused:
        throttle("status", "192.0.2.7", rule, TODAY)
    assert refused.value.code == "rate_limited" and refused.value.retry_after == 10
    assert wait_for(key("status", "192.0.2.7"), rule, TODAY + dt.timedelta(seconds=10)) == 0.0
