"""Backups taken while the shop takes payments, restored and found whole; bad files refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from typing import Any

import pytest
import requests
from click.testing import Result
from conftest import Shop, command_line, sqlite_only

import models
from operations import backups
from operations.alerts import recent_alerts

pytestmark = sqlite_only  # backups copy the SQLite file; PostgreSQL has pg_dump

ROOT = Path(__file__).parent.parent
LBPAY = [sys.executable, "-c", "from cli import main; main()"]
UTC = dt.timezone.utc


def lbpay(tmp_path: Path, database: Path, *args: str) -> Result:
    """`lbpay` on the shop's database file, run in this process."""
    return command_line(tmp_path / "cli-instance", DATABASE_URL=f"sqlite:///{database}")(*args)


def lbpay_process(tmp_path: Path, database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lbpay` in a process of its own, as a creator runs it on a shop that keeps taking payments."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(LBPAY_INSTANCE_PATH=str(tmp_path / "cli-instance"), LBPAY_DATABASE_URL=f"sqlite:///{database}")
    return subprocess.run([*LBPAY, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def order_ids(database: Path) -> set[str]:
    connection = sqlite3.connect(str(database))
    try:
        return {row[0] for row in connection.execute('SELECT public_id FROM "order"')}
    finally:
        connection.close()


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    """One proxy hop in front, so the buyers below can each come from an address of their own."""
    return {"PROXY_HOPS": "1"}


def test_a_backup_taken_under_load_restores_every_committed_order(shop: Shop, tmp_path: Path) -> None:
    live = tmp_path / "lbpay.db"
    committed: list[tuple[float, str]] = []
    stop = threading.Event()
    errors: list[str] = []

    learners = itertools.count(1)

    def buy() -> None:
        session = requests.Session()
        while not stop.is_set():
            n = next(learners)  # every order a learner of its own (orders are limited per address)
            response = session.post(shop.url + "/api/v1/orders", json={"course_id": "cpp-primer-5th"}, timeout=15,
                                    headers={"X-Forwarded-For": f"10.7.{n >> 8 & 255}.{n & 255}"})
            if response.status_code != 201:
                errors.append(response.text)
                continue
            order = response.json()
            shop.sandbox.pay(order["out_trade_no"])
            committed.append((time.monotonic(), order["order_id"]))

    workers = [threading.Thread(target=buy) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        assert wait_until(lambda: len(committed) >= 5 or bool(errors)), "the load did not get going"
        started = time.monotonic()
        result = lbpay_process(tmp_path, live, "backup", str(tmp_path / "backup.sqlite3"))
        wait_until(lambda: any(at > started for at, _ in committed) or bool(errors))
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert not errors, errors[:3]
    before = {order_id for at, order_id in committed if at < started}
    assert len(before) >= 5, "the load did not get going"
    assert len(committed) > len(before), "no order was placed while the backup ran"

    backup = tmp_path / "backup.sqlite3"
    assert backup.stat().st_mode & 0o777 == 0o600
    assert not Path(str(backup) + "-wal").exists()
    with open(backup, "rb") as f:
        header = f.read(20)
    assert header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x01\x01"  # rollback journal, not WAL

    # Restore into a fresh place, as a creator would on a new machine.
    target = tmp_path / "restored" / "lbpay.db"
    target.parent.mkdir()
    restored = lbpay_process(tmp_path, target, "restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert before <= order_ids(target)
    connection = sqlite3.connect(str(target))
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Every order the backup holds as paid also holds its license: one consistent moment.
        unlicensed = connection.execute(
            'SELECT COUNT(*) FROM "order" o LEFT JOIN license l ON l.order_id = o.id '
            "WHERE o.transaction_id IS NOT NULL AND l.id IS NULL").fetchone()[0]
        assert unlicensed == 0
    finally:
        connection.close()
    verify = lbpay_process(tmp_path, target, "audit", "verify")
    assert verify.returncode == 0, verify.stderr


def wait_until(condition: Any, timeout: float = 60) -> bool:
    """Wait for a condition (not for a time: a busy machine only makes it slower); return whether it came true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(4096 + 100, min(len(data), 4096 * 3), 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make_bad, words", [
    (lambda p: p.write_bytes(os.urandom(8192)), "not a SQLite database"),
    (lambda p: p.write_bytes(b""), "not a SQLite database"),
    (lambda p: sqlite3.connect(str(p)).execute("CREATE TABLE t (x)").connection.commit(),
     "not a Learning Buddy Pay database"),
    ("truncated", ""),
    ("corrupted", ""),
])
def test_restore_refuses_a_bad_file_and_leaves_the_database_alone(shop: Shop, tmp_path: Path, make_bad,
                                                                    words: str) -> None:
    live = tmp_path / "lbpay.db"
    shop.order()
    good = tmp_path / "good.sqlite3"
    assert lbpay(tmp_path, live, "backup", str(good)).exit_code == 0
    bad = tmp_path / "bad.sqlite3"
    if make_bad == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif make_bad == "corrupted":
        bad.write_bytes(good.read_bytes())
        corrupt_middle(bad)
    else:
        make_bad(bad)
    before = order_ids(live)
    result = lbpay(tmp_path, live, "restore", str(bad), "--yes")
    assert result.exit_code != 0
    assert "refusing to restore" in result.stderr and words in result.stderr
    assert order_ids(live) == before


def test_a_backup_never_overwrites_a_file(shop: Shop, tmp_path: Path) -> None:
    existing = tmp_path / "precious.sqlite3"
    existing.write_bytes(b"keep me")
    result = lbpay(tmp_path, tmp_path / "lbpay.db", "backup", str(existing))
    assert result.exit_code != 0 and "never overwrites" in result.stderr
    assert existing.read_bytes() == b"keep me"


def test_the_daily_backup_runs_once_a_day_and_keeps_the_newest(shop: Shop, tmp_path: Path) -> None:
    folder = tmp_path / "daily"
    core = with_config(shop.app.extensions["lbpay.shop"], backup_dir=folder, backup_keep=3)
    now = dt.datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    with models.db.connection_context():
        for day in range(5):
            moment = now + dt.timedelta(days=day)
            assert backups.daily_backup(core, moment)["backed_up"] == 1
            # Make the file's age match the simulated day, as the job judges by it.
            newest = backups.latest_backup(folder)
            os.utime(newest, (moment.timestamp(), moment.timestamp()))
            assert backups.daily_backup(core, moment + dt.timedelta(hours=2)) == {}
    kept = sorted(p.name for p in folder.glob("lbpay-*.sqlite3"))
    assert kept == ["lbpay-20261103T030000Z.sqlite3", "lbpay-20261104T030000Z.sqlite3",
                    "lbpay-20261105T030000Z.sqlite3"]


def test_a_failed_daily_backup_raises_an_alert(shop: Shop, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backups folder should be")
    core = with_config(shop.app.extensions["lbpay.shop"], backup_dir=blocker / "backups")
    with models.db.connection_context():
        with pytest.raises(OSError):
            backups.daily_backup(core, dt.datetime.now(UTC))
        alerts = recent_alerts()
    assert [a.kind for a in alerts] == ["backup_failed"]


def with_config(core: Any, **changes: Any) -> Any:
    """The same shop with some settings changed, as a start with those LBPAY_* variables would give."""
    return dataclasses.replace(core, config=dataclasses.replace(core.config, **changes))


@pytest.mark.parametrize("addition, words", [
    ('CREATE TRIGGER steal AFTER INSERT ON license BEGIN UPDATE course SET price_fen = 1; END',
     "trigger steal"),
    ('CREATE VIEW everything AS SELECT * FROM "order"', "view everything"),
    ('CREATE TABLE stash (x TEXT)', "table stash"),
    ('ALTER TABLE course ADD COLUMN hook TEXT', "table course columns hook"),
])
def test_restore_refuses_a_backup_whose_schema_is_not_ours(shop: Shop, tmp_path: Path, addition: str,
                                                           words: str) -> None:
    """issue 15: a backup is compared with the schema our migrations make before it replaces anything."""
    live = tmp_path / "lbpay.db"
    shop.order()
    tampered = tmp_path / "tampered.sqlite3"
    assert lbpay(tmp_path, live, "backup", str(tampered)).exit_code == 0
    connection = sqlite3.connect(str(tampered))
    connection.execute(addition)
    connection.commit()
    connection.close()
    before = order_ids(live)
    result = lbpay(tmp_path, live, "restore", str(tampered), "--yes")
    assert result.exit_code != 0
    assert "refusing to restore" in result.stderr and "never made" in result.stderr and words in result.stderr
    assert order_ids(live) == before
    with sqlite3.connect(str(live)) as check:
        assert check.execute("SELECT COUNT(*) FROM sqlite_master WHERE type IN ('trigger', 'view')").fetchone() == (0,)


def test_the_database_and_its_wal_are_private_to_the_service(tmp_path: Path) -> None:
    """issue 15: the database holds buyers' addresses and the audit trail: mode 0600 from the first write."""
    database = tmp_path / "fresh" / "lbpay.db"
    database.parent.mkdir()
    old_umask = os.umask(0o022)
    try:
        assert lbpay(tmp_path, database, "init").exit_code == 0
    finally:
        os.umask(old_umask)
    assert database.stat().st_mode & 0o777 == 0o600
    # While a connection is open the WAL and shared-memory files exist: SQLite gives them the file's mode.
    from database import open_database

    opened = open_database(f"sqlite:///{database}", str(tmp_path))
    opened.connect()
    try:
        opened.execute_sql("INSERT INTO course (id, title, price_fen, currency, plan, active, created_at) "
                           "VALUES ('c', 't', 1, 'CNY', 'one_time', 1, '2026-01-01 00:00:00')")
        for path in (Path(f"{database}-wal"), Path(f"{database}-shm")):
            assert path.stat().st_mode & 0o777 == 0o600, path
    finally:
        opened.close()
    # A database made before this rule is narrowed at the next start.
    database.chmod(0o644)
    assert lbpay(tmp_path, database, "courses", "list").exit_code == 0
    assert database.stat().st_mode & 0o777 == 0o600
