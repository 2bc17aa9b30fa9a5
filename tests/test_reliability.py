"""The reliability suite in its short form: real buyers, gunicorn and the sandbox under each fault of issue 3."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Sandbox, sqlite_only
from reliability.scenarios import SCENARIOS, SHORT, Row, run, table

# The harness runs its servers on a SQLite file of its own; PostgreSQL runs skip it.
pytestmark = sqlite_only


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[list[Row], list[str]]:
    """Run every scenario once (about 80 s) and show the table."""
    folder: Path = tmp_path_factory.mktemp("reliability")
    rows, missed = run(folder, SHORT, report=lambda line: None)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n" + table(rows))
    return rows, missed


@pytest.mark.timeout(300)
@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s.__name__ for s in SCENARIOS])
def test_each_scenario_meets_the_goal(outcome: tuple[list[Row], list[str]], index: int) -> None:
    row = outcome[0][index]
    assert row.misses() == [], (row.misses(), row.notes)
    assert not any("MISSED" in note for note in row.notes), row.notes


@pytest.mark.timeout(300)
def test_across_the_run_every_payment_has_one_license_and_the_audit_chain_is_whole(
        outcome: tuple[list[Row], list[str]]) -> None:
    assert outcome[1] == []


def test_the_sandbox_fails_every_call_for_a_time_window_then_recovers(sandbox: Sandbox) -> None:
    armed = sandbox.control("POST", "faults", {"api": {"fail_for": 0.5, "status": 500, "code": "SYSTEM_ERROR"}})
    assert armed.status_code == 200 and armed.json()["api"]["fail_until"] > time.time()
    path = "/v3/pay/transactions/out-trade-no/NOPE?mchid=1230000109"

    def status() -> int:
        import requests

        return requests.get(sandbox.url + path, timeout=5).status_code

    assert [status(), status()] == [500, 500]  # fails before even checking the signature
    time.sleep(0.6)
    assert status() == 401  # healthy again: an unsigned call is refused as WeChat would


def test_the_sandbox_hangs_every_call_for_a_time_window(sandbox: Sandbox) -> None:
    import requests

    sandbox.control("POST", "faults", {"api": {"hang_for": 0.8, "seconds": 0.5}})
    with pytest.raises(requests.Timeout):
        requests.get(sandbox.url + "/v3/certificates", timeout=0.2)
    time.sleep(0.9)
    started = time.monotonic()
    requests.get(sandbox.url + "/v3/certificates", timeout=5)
    assert time.monotonic() - started < 0.3
