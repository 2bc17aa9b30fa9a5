"""Issue 13 item 6: `make run` as a newcomer meets it — the addresses, the console account, one line per request."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path

import requests
from servers import LBPAY, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(LBPAY_INSTANCE_PATH=str(tmp_path / "instance"), PYTHONUNBUFFERED="1", **extra)
    return env


def mail_runs_reporting_one_waiting(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM job_run WHERE name = 'mail' AND summary LIKE "
                          "'%\"waiting_without_smtp\": 1%'").fetchone()[0]


def test_make_run_is_quiet_and_useful(tmp_path: Path) -> None:
    """The banner names every address and the exact console-account command; then one line per request,
    no APScheduler chatter, and a mail waiting without SMTP is mentioned once, not every 10 s."""
    port = free_port()
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        # -o: use the venv as it is (this test runs inside it), as `make run` does the second time.
        make = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/.runtime", "run", f"PORT={port}"],
                                cwd=ROOT, env=clean_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _answers(base), timeout=90), log.read_text()[-3000:]
        banner = log.read_text()
        for line in (f"{base}/buy/cpp-primer-5th", f"{base}/admin", f"{base}/sandbox/",
                     f"make admin EMAIL=you@example.com PORT={port}",
                     f"LBPAY_PUBLIC_BASE_URL={base} .venv/bin/lbpay admin create you@example.com",
                     ".venv/bin/activate"):
            assert line in banner, (line, banner)

        probe = "ord_" + uuid.uuid4().hex[:22]
        for _ in range(3):
            assert requests.get(f"{base}/api/v1/orders/{probe}", timeout=10).status_code == 404

        # A purchase with an e-mail address queues its license mail; no LBPAY_SMTP_URL, so it waits.
        order = requests.post(f"{base}/api/v1/orders", json={"course_id": "cpp-primer-5th",
                                                             "email": "learner@example.com"}, timeout=30).json()
        paid = requests.post(f"{base}/sandbox/control/orders/{order['out_trade_no']}/pay",
                             json={"result": "success"}, timeout=30)
        assert paid.status_code == 200, paid.text
        database = tmp_path / "instance" / "lbpay.db"
        # Two mail passes (10 s apart) that each found the same waiting mail.
        assert wait_for(lambda: mail_runs_reporting_one_waiting(database) >= 2, timeout=60), "two mail passes"
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=30)
    output = log.read_text()
    assert sum(probe in line for line in output.splitlines()) == 3, output[-3000:]  # one line per request
    assert '"logger": "apscheduler' not in output, output[-3000:]
    assert sum("waiting_without_smtp" in line for line in output.splitlines()) == 1, output[-3000:]


def _answers(base: str) -> bool:
    try:
        return requests.get(base + "/api/v1/courses", timeout=2).ok
    except requests.RequestException:
        return False


def test_make_admin_names_the_address_make_run_serves(tmp_path: Path) -> None:
    port = free_port()
    password = tmp_path / "password"
    password.write_text("a long console password\n")
    done = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.runtime", "admin",
                           "EMAIL=creator@example.com", f"PORT={port}", f"PASSWORD_FILE={password}"],
                          cwd=ROOT, env=clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"sign in at http://127.0.0.1:{port}/admin/login" in done.stdout


def test_admin_create_prints_the_public_url_it_is_given(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("a long console password\n")
    env = clean_env(tmp_path, LBPAY_PUBLIC_BASE_URL="http://127.0.0.1:8123")
    assert subprocess.run([*LBPAY, "init"], cwd=ROOT, env=env, capture_output=True, timeout=120).returncode == 0
    done = subprocess.run([*LBPAY, "admin", "create", "creator@example.com", "--password-file", str(password)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sign in at http://127.0.0.1:8123/admin/login" in done.stdout
