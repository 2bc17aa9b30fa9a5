"""The lbpay command line as a creator runs it: each command builds its own app on a real database file."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Lbpay, command_line
from flask import Flask

VECTORS = Path(__file__).parent / "vectors" / "learning-buddy-license"
LBPAY = [sys.executable, "-c", "from cli import main; main()"]


@pytest.fixture
def lbpay(tmp_path: Path) -> Lbpay:
    return command_line(tmp_path / "instance")


def test_init_is_safe_to_run_twice_and_never_replaces_the_license_key(lbpay: Lbpay, tmp_path: Path) -> None:
    assert lbpay("init").exit_code == 0
    key = tmp_path / "instance" / "license_key.pem"
    first = key.read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600
    assert lbpay("init").exit_code == 0
    assert key.read_bytes() == first


def test_courses_are_added_and_listed(lbpay: Lbpay) -> None:
    lbpay("init")
    added = lbpay("courses", "add", "cpp-primer-5th", "--title", "C++ Primer 第5版", "--price-fen", "9900")
    assert added.exit_code == 0, added.stderr
    sub = lbpay("courses", "add", "rust-monthly", "--title", "Rust", "--price-fen", "2900",
                "--subscription", "--period-days", "30")
    assert sub.exit_code == 0, sub.stderr
    listing = lbpay("courses", "list").stdout.splitlines()
    assert listing == ["cpp-primer-5th\tC++ Primer 第5版\t9900 fen\tone_time\tlifetime\tactive",
                       "rust-monthly\tRust\t2900 fen\tsubscription\t30d\tactive"]


@pytest.mark.parametrize("args, words", [
    (["courses", "add", "Bad Id", "--title", "T", "--price-fen", "100"], "like cpp-primer-5th"),
    (["courses", "add", "ok-id", "--title", "T", "--price-fen", "0"], "price-fen"),
    (["courses", "add", "ok-id", "--title", "T", "--price-fen", "9.9"], "price-fen"),
    (["courses", "add", "ok-id", "--title", "T", "--price-fen", "100", "--subscription"], "period"),
])
def test_a_bad_course_is_refused_with_the_reason(lbpay: Lbpay, args: list[str], words: str) -> None:
    lbpay("init")
    result = lbpay(*args)  # an uncaught exception (a traceback in a terminal) fails the test here
    assert result.exit_code != 0
    assert words in result.stderr
    assert lbpay("courses", "list").stdout == ""


def test_the_extensions_sample_license_verifies_but_has_expired(tmp_path: Path) -> None:
    """The entry point itself, in a real process: its output and its exit code 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env["LBPAY_INSTANCE_PATH"] = str(tmp_path / "instance")
    result = subprocess.run([*LBPAY, "license", "verify", str(VECTORS / "test-license-valid.txt"),
                             "--public-key-file", str(VECTORS / "public-key.txt")],
                            env=env, cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "expired"
    assert '"expiresAt": "2026-11-09T14:50:01.340Z"' in result.stdout
    assert "Traceback" not in result.stderr


def test_a_license_we_issue_verifies_with_our_own_keys(app: Flask, runner: Lbpay) -> None:
    from licensing import issue_license, load_signing_key

    key = load_signing_key(Path(app.instance_path) / "license_key.pem")
    now = dt.datetime.now(dt.timezone.utc)
    text = issue_license(key, license_id="0b7f5e9a-8d1c-4e2a-9f3b-1c2d3e4f5a6b", course_id="cpp-primer-5th",
                         order_id="ord_x", plan="one_time", created_at=now, expires_at=now + dt.timedelta(days=1))
    valid = runner("license", "verify", text)
    assert valid.exit_code == 0, valid.output
    assert valid.stdout.strip().splitlines()[-1] == "valid"
    flipped = text[:10] + ("A" if text[10] != "A" else "B") + text[11:]
    invalid = runner("license", "verify", flipped)
    assert invalid.exit_code == 1 and "invalid" in invalid.stdout


def test_codes_are_added_listed_and_paused(lbpay: Lbpay) -> None:
    lbpay("init")
    lbpay("courses", "add", "cpp-primer-5th", "--title", "C++ Primer", "--price-fen", "9900")
    added = lbpay("codes", "add", "studygroup", "--percent", "20", "--max-uses", "30", "--once-per-buyer")
    assert added.exit_code == 0, added.stderr
    assert added.stdout == "1\tSTUDYGROUP\tpercent\t20\n"
    launch = lbpay("codes", "add", "--launch-price-fen", "4900", "--course", "cpp-primer-5th",
                   "--ends", "2030-01-01T00:00")
    assert launch.exit_code == 0 and "launch price" in launch.stdout
    assert lbpay("codes", "pause", "StudyGroup").stdout == "1\tSTUDYGROUP\tpaused\n"
    listing = lbpay("codes", "list").stdout.splitlines()
    assert listing == ["2\tlaunch price\tlaunch\t4900\tcpp-primer-5th\t0 uses\t0 paid\t0 fen\t-0 fen\tactive",
                       "1\tSTUDYGROUP\tpercent\t20\t*\t0/30 uses\t0 paid\t0 fen\t-0 fen\tpaused"]
    refused = lbpay("codes", "add", "--launch-price-fen", "4900", "--course", "cpp-primer-5th")
    assert refused.exit_code != 0 and "ends" in refused.stderr
    assert lbpay("codes", "add", "X!", "--percent", "5").exit_code != 0
