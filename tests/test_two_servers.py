"""Issue 13 item 9: two app servers (gunicorn, scheduler on in each) on one PostgreSQL, a crowd through both.

Notifications go to server A; buyers place orders on both (a retried creation lands on the other
server) and poll server B; buyers who walk away are found by whichever server's reconcile job runs.
Run with `make test-two-servers` (PostgreSQL on loopback); `make test-postgres` runs it too.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from conftest import TEST_DATABASE_URL, database_url_for
from reliability.harness import (COURSE, AppProcess, Buyer, SandboxProcess, free_port, idempotency_hash,
                                 make_material)

import models

pytestmark = pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL only: make test-two-servers")
UTC = dt.timezone.utc
CROWD = 24
WALKAWAYS = 4


@dataclass
class Crossing(Buyer):
    """A buyer whose order creation alternates between the servers (a retried POST lands on the other one)."""

    create_on: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._next = itertools.cycle(self.create_on)

    def _create(self) -> requests.Response | None:
        try:
            return requests.post(next(self._next) + "/api/v1/orders", json={"course_id": COURSE},
                                 headers={"Idempotency-Key": self.key, "X-Forwarded-For": self.address},
                                 timeout=20)
        except requests.RequestException as exc:
            self.problems.append(f"create: {type(exc).__name__}")
            return None


@dataclass
class Pair:
    a: AppProcess
    b: AppProcess
    sandbox: SandboxProcess
    database_url: str


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    material = make_material(tmp_path / "keys")
    port_a = free_port()
    sandbox = SandboxProcess(material, port_a)  # delivers every notification to A
    url = database_url_for(tmp_path)
    # One shop on two machines: the same database, session secret and license key.
    shared = {"DATABASE_URL": url, "SECRET_KEY": "two-servers-one-shop-" + "0" * 32, "RECONCILE_SECONDS": "3"}
    a = AppProcess(material, tmp_path / "a", port_a, sandbox.url, workers=2, threads=4, settings=shared)
    b = AppProcess(material, tmp_path / "b", free_port(), sandbox.url, workers=2, threads=4, settings=shared)
    a.prepare()
    servers = []
    try:
        for server in (a, b):
            server.start()
            servers.append(server)
        yield Pair(a, b, sandbox, url)
    finally:
        for server in servers:
            server.stop()
        sandbox.stop()


def _buy_all(buyers: list[Buyer]) -> None:
    threads = [threading.Thread(target=b.buy, name=b.key) for b in buyers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.timeout(400)
def test_two_servers_on_one_postgresql_license_every_payment_once(pair: Pair) -> None:
    from database import open_database

    servers = [pair.a.url, pair.b.url]
    deadline = time.monotonic() + 120
    # Each learner from an address of their own (the per-address order limit is not what this tests),
    # with an Idempotency-Key as long as the server asks (16 characters at least).
    crowd = [Crossing(app_url=pair.b.url, sandbox=pair.sandbox, key=f"two-servers-crowd-{n:03d}",
                      address=f"10.13.1.{n + 1}", deadline=deadline,
                      retries_creation=n % 5 == 0, create_on=servers[n % 2:] + servers[:n % 2])
             for n in range(CROWD)]
    # Notifications arrive three times at once at A while B answers the polls.
    pair.sandbox.arm({"notify": {"mode": "duplicate", "copies": 3}})
    _buy_all(crowd)
    # Then notifications are lost: pollers are served by B asking WeChat, walkaways by either reconcile job.
    pair.sandbox.calm()
    pair.sandbox.arm({"notify": {"mode": "drop"}})
    deadline = time.monotonic() + 120
    quiet = [Crossing(app_url=pair.b.url, sandbox=pair.sandbox, key=f"two-servers-quiet-{n:03d}",
                      address=f"10.13.2.{n + 1}", deadline=deadline,
                      polls=n >= WALKAWAYS, comes_back_after=12, create_on=servers[n % 2:] + servers[:n % 2])
             for n in range(WALKAWAYS * 2)]
    _buy_all(quiet)
    pair.sandbox.calm()
    buyers = crowd + quiet

    charged = {n: o for n, o in pair.sandbox.orders().items() if o.get("transaction_id")}
    models.db.initialize(open_database(pair.database_url, "/"))
    with models.db.connection_context():
        licenses_per_order: dict[str, int] = {}
        for lic in models.License.select(models.License, models.Order).join(models.Order):
            number = lic.order.out_trade_no
            licenses_per_order[number] = licenses_per_order.get(number, 0) + 1
        ours = {b.key: [o.out_trade_no for o in models.Order.select().where(
            models.Order.idempotency_key == idempotency_hash(b.key))] for b in buyers}
        runs = list(models.JobRun.select().order_by(models.JobRun.name, models.JobRun.started_at))
        from billing.audit import verify_chain

        whole, checked, _ = verify_chain()

    # Nothing lost: every buyer paid exactly once and holds a license.
    assert all(b.paid_at is not None for b in buyers), [(b.key, b.problems) for b in buyers if b.paid_at is None]
    unlicensed = [b.key for b in buyers if b.license is None]
    assert unlicensed == [], unlicensed
    for buyer in buyers:
        assert len(ours[buyer.key]) == 1, (buyer.key, ours[buyer.key])  # one order, whichever server it asked
    # One license per payment, none without one.
    assert set(charged) == {n for orders in ours.values() for n in orders}
    assert {n: licenses_per_order.get(n, 0) for n in charged} == {n: 1 for n in charged}
    assert set(licenses_per_order) == set(charged)
    assert whole and checked > 0
    # Jobs: each ran on both machines, never two runs of one job at the same time.
    holders = {pid for run in runs for pid in [int(run.holder.split(":")[1])]}
    assert holders & pair.a.worker_pids() and holders & pair.b.worker_pids(), (holders, runs[:5])
    by_job: dict[str, list[Any]] = {}
    for run in runs:
        by_job.setdefault(run.name, []).append(run)
    assert "reconcile" in by_job
    a_pids, b_pids = pair.a.worker_pids(), pair.b.worker_pids()
    print(f"\ntwo servers: {len(buyers)} buyers, {len(charged)} payments, {sum(licenses_per_order.values())} "
          f"licenses; job runs on A {sum(int(r.holder.split(':')[1]) in a_pids for r in runs)}, "
          f"on B {sum(int(r.holder.split(':')[1]) in b_pids for r in runs)}")
    for name, job_runs in by_job.items():
        for before, after in zip(job_runs, job_runs[1:]):
            assert before.finished_at is not None and before.finished_at <= after.started_at, (name, before, after)


@pytest.mark.timeout(200)
def test_twenty_requests_racing_through_two_servers_for_ten_tokens_get_exactly_ten(pair: Pair) -> None:
    """One address's resend limit (10, one more each minute) holds when 20 requests race through four workers.

    The resend limit, because its step (60 s) outlasts any race on a busy machine, so exactly 10 is
    the only right answer; the order limit refills every 6 s, which 20 orders to WeChat can take.
    """
    from database import open_database

    from billing.limits import RESEND_PER_CLIENT

    racers = RESEND_PER_CLIENT.count * 2
    servers = [pair.a.url, pair.b.url]
    start = threading.Barrier(racers)
    answers: list[requests.Response] = []

    def ask(n: int) -> None:
        start.wait()
        answers.append(requests.post(servers[n % 2] + "/api/v1/licenses/resend",
                                     json={"email": f"racer{n}@example.com"},
                                     headers={"X-Forwarded-For": "10.13.3.1"}, timeout=60))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [202] * RESEND_PER_CLIENT.count + [429] * RESEND_PER_CLIENT.count, statuses
    assert all(r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
               for r in answers if r.status_code == 429)
    models.db.initialize(open_database(pair.database_url, "/"))
    with models.db.connection_context():
        (row,) = models.RateLimit.select().where(models.RateLimit.key.startswith("resend-ip:"))
    # The bucket holds exactly ten takes: full burst spent, due one window ahead of the first take.
    assert row.due - time.time() == pytest.approx(RESEND_PER_CLIENT.seconds, abs=30)
