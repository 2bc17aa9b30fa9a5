"""Crash safety: SIGKILL the real server at each step of a payment, restart, and nothing is lost or doubled."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from conftest import LiveServer, Sandbox, another_writer, database_url_for, live_config
from servers import wait_for
from reliability.harness import COURSE, AppProcess, Material, SandboxProcess, free_port, make_material

import models
from app import create_app
from database import open_database
from billing.audit import verify_chain
from licensing import verify_license
from wechatpay.crypto import load_public_key

UTC = dt.timezone.utc
CRASH_STEPS = ("notify.after_store", "fulfil.before_commit", "fulfil.after_commit")


class CrashBench:
    """One sandbox process for the module, delivering to one port where each test starts its own gunicorn."""

    def __init__(self, folder: Path) -> None:
        self.material: Material = make_material(folder)
        self.port = free_port()
        self.sandbox = SandboxProcess(self.material, self.port)
        self.apps: list[AppProcess] = []

    def app(self, folder: Path, crash_at: str, **settings: str) -> AppProcess:
        # The run's database: a SQLite file in the app's folder, or a PostgreSQL schema of its own.
        app = AppProcess(self.material, folder, self.port, self.sandbox.url, workers=2, threads=4,
                         settings={"SCHEDULER": "off", "DATABASE_URL": database_url_for(folder), **settings})
        app.prepare()
        app.start(crash_at=crash_at)
        self.apps.append(app)
        return app


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashBench]:
    made = CrashBench(tmp_path_factory.mktemp("crash"))
    yield made
    made.sandbox.stop()


@pytest.fixture(autouse=True)
def _calm(bench: CrashBench) -> Iterator[None]:
    bench.sandbox.calm()
    yield
    for app in bench.apps:
        app.stop()
    bench.apps.clear()


def place_order(app: AppProcess) -> dict[str, Any]:
    response = requests.post(app.url + "/api/v1/orders", json={"course_id": COURSE},
                             headers={"Idempotency-Key": "crash-" + str(time.time_ns())}, timeout=20)
    assert response.status_code == 201, response.text
    return dict(response.json())


def poll(app: AppProcess, order: dict[str, Any]) -> dict[str, Any] | None:
    """One status poll; None when the worker died under it."""
    try:
        response = requests.get(f"{app.url}/api/v1/orders/{order['order_id']}",
                                headers={"Authorization": f"Bearer {order['order_token']}"}, timeout=20)
    except requests.ConnectionError:
        return None
    return dict(response.json()) if response.status_code == 200 else None


def deliveries(bench: CrashBench, order: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in bench.sandbox.deliveries() if d["subject"] == order["out_trade_no"]]


def assert_one_verified_license(app: AppProcess, order: dict[str, Any]) -> None:
    view = wait_for(lambda: poll(app, order))
    assert view["status"] == "fulfilled" and view["license"] is not None, view
    keys = requests.get(app.url + "/api/v1/license-keys", timeout=10).json()["keys"]
    public = {k["kid"]: load_public_key(k["public_key_pem"].encode()) for k in keys}
    check = verify_license(view["license"]["key"], public, dt.datetime.now(UTC), expected_course=COURSE)
    assert check.status == "valid" and check.payload["orderId"] == order["order_id"]


def ledger(app: AppProcess, order: dict[str, Any]) -> dict[str, Any]:
    """What the database holds for one order, and whether the audit chain is whole."""
    models.db.initialize(open_database(app.settings["DATABASE_URL"], "/"))
    with models.db.connection_context():
        row = models.Order.get(models.Order.out_trade_no == order["out_trade_no"])
        events = [e.action for e in models.AuditEvent.select().where(models.AuditEvent.order == row.id)]
        paid = [json.loads(e.detail) for e in models.AuditEvent.select().where(
            (models.AuditEvent.order == row.id) & (models.AuditEvent.action == "order.paid"))]
        return {
            "status": row.status,
            "licenses": models.License.select().where(models.License.order == row.id).count(),
            "events": events,
            "paid_via": [p["source"] for p in paid],
            "notifications": [n.result for n in models.Notification.select().order_by(models.Notification.id)],
            "chain": verify_chain(),
        }


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_a_worker_killed_at_any_step_of_a_notification_is_healed_by_the_retry(
        bench: CrashBench, tmp_path: Path, step: str) -> None:
    marker = tmp_path / "crashed"
    app = bench.app(tmp_path / "app", f"{step}:{marker}")
    workers = app.worker_pids()
    order = place_order(app)

    bench.sandbox.control("POST", f"orders/{order['out_trade_no']}/pay", {"result": "success"})

    # No polling until WeChat's re-send got through: the notification path alone must heal.
    sent = wait_for(lambda: [d for d in deliveries(bench, order) if d["ok"]])
    assert sent, deliveries(bench, order)
    assert marker.exists(), "the crash point was never reached"
    assert wait_for(lambda: len(app.worker_pids()) == 2 and app.worker_pids() != workers)
    first = deliveries(bench, order)[0]
    assert first["status"] is None and "Error" in first["error"]  # the worker died under it
    assert_one_verified_license(app, order)
    book = ledger(app, order)
    assert book["status"] == "fulfilled" and book["licenses"] == 1
    assert book["events"].count("order.paid") == 1 and book["events"].count("license.issued") == 1
    assert book["paid_via"] == ["notification"]
    assert book["chain"][0] is True, book["chain"]
    results = book["notifications"]
    if step in ("notify.after_store", "fulfil.before_commit"):
        # The notification is written in the transaction it causes: the first try rolled back with
        # the process, leaving nothing (one order.paid above), and the re-send fulfilled the order.
        assert results[0] == "fulfilled", results
    else:
        # committed, but WeChat never heard 204: its re-send finds the order already fulfilled
        assert results[:2] == ["fulfilled", "duplicate"], results


def test_a_worker_killed_while_a_poll_fulfils_the_order_is_healed_by_the_next_poll(
        bench: CrashBench, tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    app = bench.app(tmp_path / "app", f"fulfil.before_commit:{marker}")
    bench.sandbox.arm({"notify": {"mode": "drop"}})
    order = place_order(app)
    bench.sandbox.control("POST", f"orders/{order['out_trade_no']}/pay", {"result": "success"})

    fulfilled = wait_for(lambda: (poll(app, order) or {}).get("status") == "fulfilled", timeout=30)

    assert fulfilled and marker.exists()
    assert_one_verified_license(app, order)
    book = ledger(app, order)
    assert book["licenses"] == 1 and book["paid_via"] == ["poll"]
    assert book["chain"][0] is True


def test_a_notification_waiting_on_a_locked_database_answers_503_and_the_retry_succeeds(
        tmp_path: Path, keys: Any, sandbox: Sandbox, clock: Any, make_notification: Any) -> None:
    app = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock, "DB_BUSY_TIMEOUT_MS": "300"})
    with models.db.connection_context():
        models.create_tables()
        from billing.courses import save_course

        save_course(app.extensions["lbpay.shop"], course_id=COURSE, title="C++ Primer 第5版", price_fen=9900)
    server = LiveServer(app)
    try:
        order = requests.post(server.url + "/api/v1/orders", json={"course_id": COURSE}, timeout=15).json()
        note = make_notification(order)
        holder = another_writer(app.extensions["lbpay.shop"].config.database_url)  # past busy_timeout
        try:
            started = time.monotonic()
            locked = requests.post(server.url + "/wechatpay/notify/transaction", data=note.body,
                                   headers=note.headers, timeout=15)
            took = time.monotonic() - started
        finally:
            holder.rollback()
            holder.close()
        assert locked.status_code == 503 and locked.json()["code"] == "FAIL"
        assert 0.25 < took < 5, took
        with models.db.connection_context():  # nothing partial: not even the raw notification
            assert models.Notification.select().count() == 0
            assert models.License.select().count() == 0
            assert models.Order.get().status == "pending"

        retried = requests.post(server.url + "/wechatpay/notify/transaction", data=note.body,
                                headers=note.headers, timeout=15)

        assert retried.status_code == 204
        with models.db.connection_context():
            assert models.License.select().count() == 1
            assert models.Order.get().status == "fulfilled"
            assert verify_chain()[0] is True
    finally:
        server.stop()
