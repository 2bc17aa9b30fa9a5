"""The one rate-limit algorithm (billing.limits.decide): a burst of ``count``, refilled evenly over ``seconds``."""

from __future__ import annotations

import pytest

from billing.limits import LocalBucket, Rule, decide, retry_after


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
