"""The off-machine replica (issue 19): Litestream to S3-compatible storage, and a lost volume restored from it.

The storage is moto's S3-compatible server on loopback behind a gate the tests can shut. The shop
is a Fly-shaped machine run through the image's real ENTRYPOINT and CMD (tests/test_fly_start.py):
the entrypoint writes Litestream's settings, restores an empty volume, migrates, and runs gunicorn
under `litestream replicate -exec`.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from conftest import MCHID, Keys, Sandbox, Tls, command_line, sqlite_only
from s3_storage import S3Storage
from test_fly_start import FlyMachine, buy, fly_machine, poll

from licensing import verify_license
from operations.replica import (ReplicaError, litestream_status, restore_from_replica, seal, sealed_keys_path,
                                synced_at, unseal, upload_now)
from settings import ConfigError, load_config
from wechatpay.crypto import load_public_key

pytestmark = sqlite_only  # Litestream replicates the SQLite file on the volume

UTC = dt.timezone.utc
VENV_BIN = Path(sys.executable).parent
METRICS_TOKEN = "replica-metrics-" + secrets.token_hex(8)
COURSE = ("lbpay", "courses", "add", "cpp-primer-5th", "--title", "C++ Primer 第5版", "--price-fen", "9900")


@pytest.fixture(scope="module")
def storage() -> Iterator[S3Storage]:
    s3 = S3Storage()
    try:
        yield s3
    finally:
        s3.close()


@pytest.fixture
def replicated(keys: Keys, sandbox: Sandbox, tls: Tls, storage: S3Storage) -> Iterator[Callable[..., FlyMachine]]:
    """Fly-shaped machines whose shop replicates to a bucket of the local storage."""
    bases: list[Path] = []

    def make(bucket: str, path: str = "shop", seal_key: str | None = None, **env: str) -> FlyMachine:
        base = Path(tempfile.mkdtemp(prefix="lbpay-replica-"))
        base.chmod(0o755)
        bases.append(base)
        machine = fly_machine(base, keys, sandbox, tls)
        machine.uid = exec_uid(machine.uid)
        machine.env.update(LBPAY_RUN_UID=str(machine.uid), LBPAY_RUN_GID=str(machine.uid))
        machine.env.update(storage.settings(bucket, path, seal_key or SEAL_KEY))
        machine.env.update(LBPAY_METRICS_TOKEN=METRICS_TOKEN, **env)
        return machine

    try:
        yield make
    finally:
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


SEAL_KEY = secrets.token_hex(32)


def exec_uid(uid: int) -> int:
    """``uid`` if a process it runs can start this checkout's Python again (Litestream execs gunicorn), else root.

    In the image Python is /usr/local/bin/python; a checkout whose Python lives under a private
    home (/root/.pyenv) lets uid 10001 start it only straight from setpriv, not from a child.
    """
    if uid == 0 or os.geteuid() != 0:
        return uid
    probe = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", "sh", "-c",
                            'exec "$0" -c "import app"', str(VENV_BIN / "python")],
                           cwd=Path(__file__).parent.parent, capture_output=True, timeout=60)
    return uid if probe.returncode == 0 else 0


def kill(process: subprocess.Popen[bytes]) -> None:
    """The machine gone at once: Litestream and gunicorn SIGKILLed together, nothing flushed."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def lose_volume(machine: FlyMachine) -> None:
    """A new, empty volume in place of the old one (root's, as Fly mounts it)."""
    shutil.rmtree(machine.volume)
    machine.volume.mkdir(mode=0o755)


def uploads(machine: FlyMachine) -> dict[str, dt.datetime | None]:
    """When Litestream last brought each database's replica up to date, by file name (its control socket)."""
    listed = litestream_status(machine.volume / "litestream.sock") or []
    return {Path(entry["path"]).name: synced_at(entry) for entry in listed}


def wait_until_replicated(machine: FlyMachine, after: dt.datetime, timeout: float = 60) -> None:
    """Until Litestream confirms the replica holds the last transaction of the database and of the sealed keys.

    (Its routine uploads run every second; a sale in the last second before a volume is lost may be
    lost with it. The test waits for that second to pass, as Litestream reports it.)
    """
    deadline = time.monotonic() + timeout
    socket_file = machine.volume / "litestream.sock"
    while not all(upload_now(socket_file, machine.volume / name) for name in ("lbpay.db", "lbpay-keys.db")):
        assert time.monotonic() < deadline, f"not replicated since {after}: {uploads(machine)}\n{machine.output()}"
        time.sleep(0.2)
    seen = uploads(machine)
    assert all(moment is not None and moment > after for moment in seen.values()), seen


def metric(machine: FlyMachine, name: str) -> float | None:
    text = requests.get(machine.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return None if found is None else float(found.group(1))


def alerts_of(machine: FlyMachine, kind: str) -> list[str]:
    with sqlite3.connect(f"file:{machine.volume / 'lbpay.db'}?mode=ro", uri=True, timeout=10) as connection:
        return [row[0] for row in connection.execute("SELECT message FROM alert WHERE kind = ?", (kind,))]


def license_keys(machine: FlyMachine) -> dict[str, Any]:
    keys = requests.get(machine.url + "/api/v1/license-keys", timeout=10).json()["keys"]
    return {k["kid"]: load_public_key(k["public_key_pem"].encode()) for k in keys}


def signer(license_key: str, keys: dict[str, Any]) -> str | None:
    check = verify_license(license_key, keys, dt.datetime.now(UTC))
    assert check.status == "valid", check
    return check.kid


def ran(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


# --- the whole story: a lost volume --------------------------------------------------------

@pytest.mark.timeout(240)
def test_a_lost_volume_comes_back_through_the_entrypoint_with_every_order_license_and_rotated_key(
        replicated: Callable[..., FlyMachine], storage: S3Storage, sandbox: Sandbox) -> None:
    machine = replicated(storage.bucket())
    # The creator's first commands, through the image: a course, then a rotation of the signing key.
    first = ran(machine.run("sh", "-c", " ".join(shlex.quote(word) for word in COURSE) + " && lbpay keys rotate"))
    assert "nothing restored: no replica" in first  # a shop's very first start
    rotated = re.search(r"new license key (\S+) is active", first).group(1)  # type: ignore[union-attr]

    server = machine.start()
    try:
        keys_before = license_keys(machine)
        assert rotated in keys_before and len(keys_before) == 2  # the mounted secret's key and the rotated one
        bought = [buy(machine, sandbox) for _ in range(3)]
        assert {signer(b["license"]["key"], keys_before) for b in bought} == {rotated}
        sold = dt.datetime.now(UTC)
        wait_until_replicated(machine, sold)
    finally:
        kill(server)  # no graceful stop: nothing more is uploaded than was already
    sealed = b"".join(path.read_bytes() for path in machine.volume.glob("lbpay-keys.db*") if path.is_file())
    assert sealed
    assert b"PRIVATE KEY" not in sealed and b"1230000109" not in sealed  # the keys and the marker never in clear
    lose_volume(machine)

    server = machine.start()  # the real entrypoint: it finds no database and restores the replica first
    try:
        log = machine.output()
        assert "restored 3 orders and " in log and "from the replica" in log, log[-3000:]
        for order in bought:
            again = poll(machine, order)
            assert again["status"] == "fulfilled" and again["license"]["key"] == order["license"]["key"]
        assert license_keys(machine).keys() == keys_before.keys()
        after = buy(machine, sandbox)
        assert signer(after["license"]["key"], keys_before) == rotated  # still signed by the rotated key
    finally:
        machine.stop(server)
    assert server.returncode == 0, machine.output()[-3000:]
    assert stat_mode(machine.volume / "license-keys" / "active.pem") == 0o600


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.timeout(240)
def test_the_storage_unreachable_for_a_while_loses_nothing_and_raises_the_alert(
        replicated: Callable[..., FlyMachine], storage: S3Storage, sandbox: Sandbox) -> None:
    machine = replicated(storage.bucket(), LBPAY_REPLICA_MAX_LAG_SECONDS="3")
    ran(machine.run(*COURSE))
    server = machine.start()
    try:
        bought = [buy(machine, sandbox)]
        storage.gate.shut()
        try:
            bought += [buy(machine, sandbox) for _ in range(2)]  # selling goes on: the volume has it
            deadline = time.monotonic() + 60
            while not alerts_of(machine, "replica_stalled"):
                assert time.monotonic() < deadline, machine.output()[-3000:]
                time.sleep(0.3)
            assert (metric(machine, "lbpay_replica_lag_seconds") or 0) > 3
        finally:
            storage.gate.open()
        back = dt.datetime.now(UTC)
        wait_until_replicated(machine, back, timeout=90)
        deadline = time.monotonic() + 30
        while (metric(machine, "lbpay_replica_lag_seconds") or 0) > 3:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        kill(server)
    messages = alerts_of(machine, "replica_stalled")
    assert messages and all("has not been brought up to date" in m and SEAL_KEY not in m for m in messages)
    # What the replica holds now is what a restore onto a new volume would bring back: every license.
    copy = machine.base / "restored.db"
    ran(subprocess.run([str(VENV_BIN / "litestream"), "restore", "-config",
                        machine.env["LBPAY_SECRETS_DIR"] + "/litestream.yml", "-o", str(copy),
                        str(machine.volume / "lbpay.db")], env=litestream_env(), capture_output=True, text=True,
                       timeout=60))
    with sqlite3.connect(copy) as connection:
        keys = {row[0] for row in connection.execute("SELECT key FROM license")}
    assert {order["license"]["key"] for order in bought} <= keys and len(bought) == 3


def litestream_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


# --- a replica that is not this shop's -------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox_replica(storage: S3Storage, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A sandbox shop's replica: its database and sealed keys, uploaded once by `litestream replicate -once`."""
    folder = tmp_path_factory.mktemp("sandbox-shop")
    settings = storage.settings(storage.bucket(), "sandbox-shop", SEAL_KEY)
    env = {k: v for k, v in litestream_env().items() if not k.startswith("LBPAY_")}
    env.update(settings, LBPAY_WECHATPAY_MODE="sandbox", LBPAY_INSTANCE_PATH=str(folder / "instance"))
    for command in (["lbpay", "init"], ["lbpay", "replica", "config", str(folder / "litestream.yml")],
                    ["litestream", "replicate", "-config", str(folder / "litestream.yml"), "-once"]):
        ran(subprocess.run([str(VENV_BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True,
                           timeout=120))
    return settings


def test_a_live_shop_refuses_a_sandbox_replica_and_leaves_the_volume_empty(
        replicated: Callable[..., FlyMachine], sandbox_replica: dict[str, str]) -> None:
    live = replicated(sandbox_replica["LBPAY_REPLICA_URL"].split("/")[2], "sandbox-shop")
    refused = live.run("lbpay", "restore", "--from-replica")  # the entrypoint refuses first: the machine stays down
    assert refused.returncode != 0
    assert "is a sandbox shop's and this one runs in live mode" in refused.stderr, refused.stderr
    assert not (live.volume / "lbpay.db").exists() and not (live.volume / "license-keys").exists()


def test_a_restore_refuses_another_merchants_replica(sandbox_replica: dict[str, str], tmp_path: Path) -> None:
    config = load_config({"WECHATPAY_MODE": "sandbox", "INSTANCE_PATH": str(tmp_path / "instance"),
                          **{k.removeprefix("LBPAY_"): v for k, v in sandbox_replica.items()}}, str(tmp_path))
    with pytest.raises(ReplicaError, match="belongs to merchant 1900000109, this shop is merchant 1900000999"):
        restore_from_replica(config, "1900000999")
    assert config.replica is not None
    with pytest.raises(ReplicaError, match="do not open with LBPAY_REPLICA_KEY"):
        restore_from_replica(replace(config, replica=replace(config.replica, seal_key=os.urandom(32))), "1900000109")
    restored = restore_from_replica(config, "1900000109")  # its own shop takes it back
    assert restored["restored"] and (tmp_path / "instance" / "sandbox" / "apiv3_key").exists()
    assert not list((tmp_path / "instance").glob(".restore-*"))


# --- the parts, without a server ------------------------------------------------------------

def test_sealed_keys_open_only_with_their_key_and_unaltered() -> None:
    key = bytes.fromhex(SEAL_KEY)
    # A key made here, as a rotated license key would be on disk (nothing committed is a key).
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    marker, files = {"mode": "live", "mchid": MCHID}, {"license-keys/active.pem": pem}
    blob = seal(key, marker, files, dt.datetime.now(UTC))
    assert b"PRIVATE KEY" not in blob and MCHID.encode() not in blob
    assert unseal(key, blob) == (marker, files)
    with pytest.raises(ReplicaError, match="do not open with LBPAY_REPLICA_KEY"):
        unseal(os.urandom(32), blob)
    with pytest.raises(ReplicaError, match="altered"):
        unseal(key, blob[:-1] + bytes([blob[-1] ^ 1]))


@pytest.mark.parametrize("settings, named, rule", [
    ({"REPLICA_URL": "https://bucket.example/x"}, "LBPAY_REPLICA_URL", "must be s3://BUCKET/PATH"),
    ({"REPLICA_ENDPOINT": "http://storage.example"}, "LBPAY_REPLICA_ENDPOINT", "must be an https:// URL"),
    ({"REPLICA_KEY": "too-short"}, "LBPAY_REPLICA_KEY", "64 hex digits"),
    ({"REPLICA_KEY": None}, "LBPAY_REPLICA_KEY", "required with LBPAY_REPLICA_URL"),
    ({"REPLICA_SECRET_ACCESS_KEY": None}, "LBPAY_REPLICA_SECRET_ACCESS_KEY", "required with LBPAY_REPLICA_URL"),
    ({"DATABASE_URL": "postgresql://localhost/lbpay"}, "LBPAY_REPLICA_URL", "replicates a SQLite database only"),
    ({"REPLICA_URL": None}, "LBPAY_REPLICA_ENDPOINT", "LBPAY_REPLICA_URL is not"),
])
def test_replica_settings_are_checked_with_the_others(tmp_path: Path, settings: dict[str, str | None], named: str,
                                                      rule: str) -> None:
    values: dict[str, Any] = {"REPLICA_URL": "s3://bucket/shop", "REPLICA_ENDPOINT": "https://fly.storage.tigris.dev",
                              "REPLICA_ACCESS_KEY_ID": "tid_key", "REPLICA_SECRET_ACCESS_KEY": "tsec_secret",
                              "REPLICA_KEY": SEAL_KEY}
    values.update(settings)
    with pytest.raises(ConfigError) as info:
        load_config({k: v for k, v in values.items() if v is not None}, str(tmp_path))
    assert any(p.name == named and rule in p.rule for p in info.value.problems), info.value.report()


def test_check_config_names_the_replica_and_never_prints_its_secrets(tmp_path: Path) -> None:
    settings = {"REPLICA_URL": "s3://bucket/shop", "REPLICA_ENDPOINT": "https://fly.storage.tigris.dev",
                "REPLICA_ACCESS_KEY_ID": "tid_key", "REPLICA_SECRET_ACCESS_KEY": "tsec_" + secrets.token_hex(8),
                "REPLICA_KEY": SEAL_KEY}
    done = command_line(tmp_path / "instance", **settings)("check-config")
    assert done.exit_code == 0, done.output
    assert "replica s3://bucket/shop" in done.stdout
    assert settings["REPLICA_SECRET_ACCESS_KEY"] not in done.output and SEAL_KEY not in done.output


def test_the_sealed_keys_follow_a_rotation_at_once(tmp_path: Path, storage: S3Storage) -> None:
    instance = tmp_path / "instance"
    lbpay = command_line(instance, **{k.removeprefix("LBPAY_"): v
                                      for k, v in storage.settings("unused", "shop", SEAL_KEY).items()})
    assert lbpay("init").exit_code == 0
    path = sealed_keys_path(instance / "lbpay.db")
    before = unseal(bytes.fromhex(SEAL_KEY), _blob(path))[1]
    rotated = lbpay("keys", "rotate")
    assert rotated.exit_code == 0 and "sealed for the replica" in rotated.stdout
    after = unseal(bytes.fromhex(SEAL_KEY), _blob(path))[1]
    assert after["license-keys/active.pem"] == (instance / "license-keys" / "active.pem").read_bytes()
    assert set(after) > set(before)


def _blob(path: Path) -> bytes:
    with sqlite3.connect(path) as connection:
        return bytes(connection.execute("SELECT blob FROM sealed").fetchone()[0])


def test_a_restore_from_the_replica_never_overwrites_a_database(tmp_path: Path, storage: S3Storage) -> None:
    instance = tmp_path / "instance"
    lbpay = command_line(instance, **{k.removeprefix("LBPAY_"): v
                                      for k, v in storage.settings(storage.bucket(), "shop", SEAL_KEY).items()})
    assert lbpay("init").exit_code == 0
    done = lbpay("restore", "--from-replica")
    assert done.exit_code == 1 and "exists; a restore from the replica fills an empty volume only" in done.stderr
    assert lbpay("restore", "--from-replica", "--if-missing").exit_code == 0


def test_the_replica_job_alerts_once_when_litestream_has_not_uploaded_for_too_long(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import migrations
    import models
    from app import create_app
    from conftest import clean_environment
    from operations.alerts import recent_alerts
    from operations.jobs import job_table
    from operations.metrics import render_metrics
    from operations.replica import check_replica

    clean_environment(monkeypatch)
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "REPLICA_MAX_LAG_SECONDS": "60",
                      **{k.removeprefix("LBPAY_"): v for k, v in
                         {"LBPAY_REPLICA_URL": "s3://bucket/shop", "LBPAY_REPLICA_ACCESS_KEY_ID": "key",
                          "LBPAY_REPLICA_SECRET_ACCESS_KEY": "secret", "LBPAY_REPLICA_KEY": SEAL_KEY}.items()}},
                     command_line=True)
    shop = app.extensions["lbpay.shop"]
    assert job_table(shop)["replica"].interval == 15
    now = dt.datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with models.db.connection_context():
        migrations.migrate()
        # No Litestream answers on the socket: the lag counts from the first look.
        assert check_replica(shop, now) == {"sealed": 1}
        assert "lbpay_replica_lag_seconds 30\n" in render_metrics(now + dt.timedelta(seconds=30))
        assert check_replica(shop, now + dt.timedelta(seconds=60)) == {}
        assert check_replica(shop, now + dt.timedelta(seconds=61)) == {"stalled": True}
        check_replica(shop, now + dt.timedelta(seconds=120))
        assert [a.kind for a in recent_alerts()] == ["replica_stalled"]  # one alert for one stall
