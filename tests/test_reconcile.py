"""Never lose a paid order: polls and the reconciliation job ask WeChat when notifications are lost."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path

from conftest import Shop, database_url_for, db_counts

import models
from operations.scheduler import holder_id, run_job


def drop_notifications(shop: Shop) -> None:
    assert shop.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}}).status_code == 200


def run_reconcile(shop: Shop) -> dict:
    with models.db.connection_context():
        return run_job(shop.app.extensions["lbpay.shop"], "reconcile", holder_id())


def queries(shop: Shop, order: dict) -> int:
    return sum(1 for r in shop.sandbox.requests_log()
               if r["method"] == "GET" and order["out_trade_no"] in r["path"])


def test_a_poll_asks_wechat_when_the_notification_is_lost(shop: Shop) -> None:
    drop_notifications(shop)
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    assert shop.poll(order)["status"] == "pending"  # too fresh to ask about yet
    assert queries(shop, order) == 0
    shop.clock.advance(5)
    view = shop.poll(order)
    assert view["status"] == "fulfilled" and view["license"] is not None
    assert queries(shop, order) == 1
    with models.db.connection_context():
        assert models.AuditEvent.get(models.AuditEvent.action == "order.paid").detail.count('"poll"') == 1


def test_many_polls_of_one_order_send_one_query_per_interval(shop: Shop) -> None:
    order = shop.order()
    shop.clock.advance(5)
    for _ in range(20):
        assert shop.poll(order)["status"] == "pending"
    assert queries(shop, order) == 1


def test_the_job_fulfils_a_paid_order_whose_notification_was_lost_exactly_once(shop: Shop) -> None:
    drop_notifications(shop)
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    shop.clock.advance(30)
    first = run_reconcile(shop)
    assert first["fulfilled"] == 1 and first["queried"] == 1
    assert shop.poll(order)["status"] == "fulfilled"
    assert run_reconcile(shop)["fulfilled"] == 0
    assert db_counts()["licenses"] == 1
    with models.db.connection_context():
        run = models.JobRun.select().where(models.JobRun.name == "reconcile").order_by(models.JobRun.id).first()
        assert run.ok and json.loads(run.summary)["fulfilled"] == 1


def test_the_job_leaves_unpaid_fresh_orders_alone_and_closes_expired_ones(shop: Shop) -> None:
    order = shop.order()
    assert run_reconcile(shop)["queried"] == 0  # younger than the notification's head start
    shop.clock.advance(31 * 60)
    summary = run_reconcile(shop)
    assert summary["closed"] == 1
    view = shop.poll(order)
    assert view["status"] == "closed" and view["error"]["code"] == "order_expired"
    state = shop.sandbox.control("GET", f"orders/{order['out_trade_no']}").json()
    assert state["trade_state"] == "CLOSED"


def test_an_order_paid_at_the_last_moment_is_fulfilled_not_closed(shop: Shop) -> None:
    drop_notifications(shop)
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    shop.clock.advance(31 * 60)
    summary = run_reconcile(shop)
    assert summary["closed"] == 0 and summary["fulfilled"] == 1
    assert shop.poll(order)["status"] == "fulfilled"


def test_the_job_counts_errors_and_goes_on_when_wechat_fails(shop: Shop) -> None:
    orders = [shop.order(), shop.order()]
    shop.clock.advance(30)
    shop.sandbox.control("POST", "faults", {"api": {"fail_next": 3, "status": 500, "code": "SYSTEM_ERROR"}})
    summary = run_reconcile(shop)
    assert summary["errors"] == 1 and summary["queried"] == 2
    assert all(shop.poll(o)["status"] == "pending" for o in orders)


def test_two_runs_at_once_do_the_work_once(shop: Shop) -> None:
    drop_notifications(shop)
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    shop.clock.advance(30)
    results: list = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        results.append(run_reconcile(shop))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fulfilled = sum(r["fulfilled"] for r in results if r)
    assert fulfilled == 1 and db_counts()["licenses"] == 1


def test_reconcile_once_from_the_command_line_fixes_a_lost_notification(shop: Shop, tmp_path: Path) -> None:
    import datetime as dt
    import os

    from conftest import live_config

    drop_notifications(shop)
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    with models.db.connection_context():  # make the order old enough to be due, as if a minute had passed
        row = models.Order.get()
        models.Order.update(created_at=row.created_at - dt.timedelta(minutes=1)).execute()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update({"LBPAY_" + k: str(v) for k, v in live_config(tmp_path, shop.keys, shop.sandbox.url).items()})
    result = subprocess.run([sys.executable, "-c", "from cli import main; main()", "reconcile", "--once"],
                            env=env, capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["fulfilled"] == 1
    assert shop.poll(order)["status"] == "fulfilled"


LEASE_SCRIPT = r"""
import sys, time, datetime as dt
sys.path.insert(0, {root!r})
import models
from database import open_database
from operations.jobs import Job
from operations.scheduler import holder_id, run_job
models.db.initialize(open_database({url!r}, "/"))
class Clock:  # as much of a shop as run_job needs
    wechat = None
    def now(self): return dt.datetime.now(dt.timezone.utc)
def slow(shop, now):
    time.sleep(0.15)
    return {{"ran": 1}}
probe = Job(name="probe", interval=1, run=slow)
me = holder_id()
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    run_job(Clock(), probe, me)
    time.sleep(0.01)
"""


def test_three_processes_never_run_a_job_at_the_same_time(tmp_path: Path) -> None:
    from database import open_database

    url = database_url_for(tmp_path)  # a SQLite file, or a PostgreSQL schema (two servers' leases)
    models.db.initialize(open_database(url, "/"))
    with models.db.connection_context():
        models.create_tables()
    script = LEASE_SCRIPT.format(root=str(Path(__file__).parent.parent), url=url)
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with models.db.connection_context():
        runs = list(models.JobRun.select().where(models.JobRun.name == "probe").order_by(models.JobRun.started_at))
    holders = {r.holder for r in runs}
    assert len(runs) >= 6 and len(holders) >= 2, (len(runs), holders)
    for earlier, later in zip(runs, runs[1:]):
        assert earlier.finished_at <= later.started_at, "two processes ran the job at once"


def touch_outside_service(name: str) -> None:
    """A write that changes a row every time (SQLite and PostgreSQL alike): another connection's commit."""
    now = dt.datetime.now(dt.timezone.utc)
    models.OutsideService.insert(name=name, last_ok_at=now).on_conflict(
        conflict_target=[models.OutsideService.name], update={models.OutsideService.last_ok_at: now}).execute()


def test_the_job_finishes_over_20_pending_orders_while_another_thread_keeps_committing(shop: Shop) -> None:
    # THREATS #38/#60: iterating a live SELECT while writing makes SQLite refuse the stale snapshot
    # ("database is locked") as soon as another connection commits; the job must still do its work.
    from database import write_transaction

    from billing.limits import ORDERS_PER_CLIENT

    orders = []
    for _ in range(20):  # one learner's address may place one order per step
        orders.append(shop.order())
        shop.clock.advance(ORDERS_PER_CLIENT.step)
    shop.clock.advance(30)
    stop = threading.Event()
    commits = [0]

    def keep_committing() -> None:
        with models.db.connection_context():
            while not stop.is_set():
                with write_transaction():
                    touch_outside_service(f"busy-{commits[0] % 3}")
                commits[0] += 1

    writer = threading.Thread(target=keep_committing)
    writer.start()
    try:
        summary = run_reconcile(shop)
    finally:
        stop.set()
        writer.join()
    assert commits[0] > 0
    assert "error" not in summary and summary["queried"] == 20, summary
    with models.db.connection_context():
        run = models.JobRun.get(models.JobRun.name == "reconcile")
        assert run.ok and run.finished_at is not None
        queried = models.Order.select().where(models.Order.last_queried_at.is_null(False)).count()
    assert queried == len(orders)


def test_a_job_that_fails_holding_a_stale_read_still_records_its_end(shop: Shop) -> None:
    # The failure mode of #60 for any job: it dies with a SELECT half read (an old snapshot) after
    # another connection committed; recording the run's end must not fail on that snapshot too.
    from database import write_transaction
    from operations.jobs import Job

    orders = [shop.order() for _ in range(3)]

    def commit_elsewhere() -> None:
        with models.db.connection_context(), write_transaction():
            touch_outside_service("elsewhere")

    def broken(shop_: object, now: object) -> dict:
        rows = iter(models.Order.select())
        next(rows)  # the statement stays open, holding its snapshot
        writer = threading.Thread(target=commit_elsewhere)
        writer.start()
        writer.join()
        raise RuntimeError("boom, with a read still open")

    with models.db.connection_context():
        summary = run_job(shop.app.extensions["lbpay.shop"], Job("broken", 60, broken), holder_id())
        run = models.JobRun.get(models.JobRun.name == "broken")
        lease = models.Lease.get_or_none(models.Lease.name == "broken")
    assert summary == {"error": "failed; see the log"} and len(orders) == 3
    assert run.finished_at is not None and not run.ok
    assert lease is None
