"""A machine shaped as Fly gives it runs the image's real ENTRYPOINT and CMD, sells a course, restarts, still knows the order.

Fly's layout, rebuilt in a temporary folder: an empty volume owned by root, the [[files]] secrets
written by root with mode 0644 (their contents base64-decoded, as Fly does), the environment from the
Dockerfile's ENV and fly.toml's [env], and the secrets that `fly secrets set` gives as variables.
Every path is moved into the folder; WeChat is the sandbox over TLS on loopback, so the app runs in
live mode exactly as fly.toml says. No container engine runs here: the same files run outside one.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from conftest import APIV3_KEY, APPID, MCHID, PUBLIC_KEY_ID, SHOP_ORIGIN, Keys, Sandbox, Tls, sqlite_only
from deploy_files import ROOT, docker_env, exec_form, fly, in_checkout
from servers import free_port, private_pem, public_pem

pytestmark = sqlite_only  # the machine's database is the SQLite file on its volume, as fly.toml says

VENV_BIN = Path(sys.executable).parent
SERVICE_UID = 10001
# Image paths and where this test puts them.
MOVED = {"/data": "volume", "/run/secrets": "run/secrets", "/run/lbpay-secrets": "run/lbpay-secrets"}


def service_uid() -> int:
    """The uid the entrypoint runs the app as here: 10001 as in the image, when that uid can run this checkout."""
    if os.geteuid() != 0:
        return os.geteuid()  # not root: the entrypoint has nothing to drop
    probe = subprocess.run(["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups", "--",
                            str(VENV_BIN / "python"), "-c", "import app"], cwd=ROOT, capture_output=True, timeout=60)
    # A checkout under a private home (0700) is out of 10001's reach: the entrypoint then drops to root.
    return SERVICE_UID if probe.returncode == 0 else 0


def moved(value: str, base: Path) -> str:
    """An image path (or sqlite URL) moved into ``base``."""
    for image_path, local in MOVED.items():
        for prefix in ("", "sqlite:///"):
            if value == prefix + image_path or value.startswith(prefix + image_path + "/"):
                return prefix + str(base / local) + value[len(prefix + image_path):]
    return value


@dataclass
class FlyMachine:
    """The layout Fly gives a machine, in a folder, and the image's entrypoint run in it."""

    base: Path
    env: dict[str, str]
    uid: int
    port: int
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def volume(self) -> Path:
        return self.base / MOVED["/data"]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """The image run with a command, as `docker run IMAGE ARGS` or Fly's release machine do."""
        return subprocess.run([*self.entrypoint(), *args], cwd=ROOT, env={**self.env, **env}, capture_output=True,
                              text=True, timeout=120)

    def entrypoint(self) -> list[str]:
        command = exec_form("ENTRYPOINT")
        return [str(in_checkout(command[0])), *command[1:]]

    def start(self) -> subprocess.Popen[bytes]:
        """The image's ENTRYPOINT with its CMD, bound to loopback instead of 0.0.0.0:8080."""
        command = exec_form("CMD")
        command[command.index("--bind") + 1] = f"127.0.0.1:{self.port}"
        log = self.base / f"machine-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            process = subprocess.Popen([*self.entrypoint(), *command], cwd=ROOT, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_until_healthy(process)
        except BaseException:
            if process.poll() is None:  # a failed start leaves no server behind for the next test
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            raise
        return process

    def wait_until_healthy(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the machine exited {process.returncode}:\n{self.output()}"
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or its worker still booting on a busy machine
            assert time.monotonic() < deadline, f"no /healthz within 60 s:\n{self.output()}"
            time.sleep(0.2)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """What Fly does on a restart: kill_signal (SIGTERM), then wait."""
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            pytest.fail(f"the machine ignored SIGTERM:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-6000:] for log in self.logs)


@pytest.fixture
def machine(keys: Keys, sandbox: Sandbox, tls: Tls) -> Iterator[FlyMachine]:
    # Not under pytest's private (0700) temporary root: the service user must reach the volume.
    base = Path(tempfile.mkdtemp(prefix="lbpay-fly-"))
    base.chmod(0o755)
    try:
        yield fly_machine(base, keys, sandbox, tls)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def fly_machine(base: Path, keys: Keys, sandbox: Sandbox, tls: Tls) -> FlyMachine:
    config = fly()
    (base / "volume").mkdir(mode=0o755)  # a fresh volume: empty, root's
    # `fly secrets set NAME="$(base64 -w0 key.pem)"`, then Fly decodes each into its guest_path, 0644.
    pems = {"WECHATPAY_MERCHANT_KEY_PEM": private_pem(keys.merchant),
            "WECHATPAY_PUBLIC_KEY_PEM": public_pem(keys.platform.public_key()),
            "LICENSE_KEY_PEM": private_pem(keys.license)}
    fly_secrets = {name: base64.b64encode(pem).decode() for name, pem in pems.items()}
    for entry in config["files"]:
        path = Path(moved(entry["guest_path"], base))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(fly_secrets[entry["secret_name"]], validate=True))
        path.chmod(0o644)
    # The CA of the loopback TLS certificate, where the service user can read it.
    ca_file = base / "ca.pem"
    shutil.copyfile(tls.ca_file, ca_file)
    ca_file.chmod(0o644)

    port = free_port()
    uid = service_uid()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(docker_env())
    env.update(config["env"])
    env = {name: moved(value, base) for name, value in env.items()}
    leftover = {n: v for n, v in env.items()
                if n.startswith("LBPAY_") and v.removeprefix("sqlite:///").startswith(("/data", "/run/"))}
    assert not leftover, f"paths this test does not move: {leftover}"
    env.update(
        # The image's PATH has lbpay and gunicorn; here they are in the test's venv.
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        REQUESTS_CA_BUNDLE=str(ca_file),
        LBPAY_RUN_UID=str(uid), LBPAY_RUN_GID=str(uid),
        # What the README has the creator set with `fly secrets set`, WeChat being the sandbox.
        LBPAY_SECRET_KEY="fly-secret-" + uuid.uuid4().hex,
        LBPAY_PUBLIC_BASE_URL=SHOP_ORIGIN,
        LBPAY_WECHATPAY_API_BASE=sandbox.url,
        LBPAY_WECHATPAY_MCHID=MCHID,
        LBPAY_WECHATPAY_APPID=APPID,
        LBPAY_WECHATPAY_MERCHANT_SERIAL=Keys.merchant_serial,
        LBPAY_WECHATPAY_APIV3_KEY=APIV3_KEY.decode(),
        LBPAY_WECHATPAY_PUBLIC_KEY_ID=PUBLIC_KEY_ID,
    )
    assert env["LBPAY_WECHATPAY_MODE"] == "live"  # as fly.toml says: nothing here runs in sandbox mode
    machine = FlyMachine(base=base, env=env, uid=uid, port=port)
    sandbox.config.notify_origin_map[SHOP_ORIGIN] = machine.url
    return machine


def buy(machine: FlyMachine, sandbox: Sandbox) -> dict[str, Any]:
    """Order the course as the extension does, pay it in the sandbox, wait for the license."""
    response = requests.post(machine.url + "/api/v1/orders", json={"course_id": "cpp-primer-5th",
                                                                   "email": "learner@example.com"}, timeout=15)
    assert response.status_code == 201, response.text
    order = response.json()
    sandbox.pay(order["out_trade_no"])
    deadline = time.monotonic() + 20
    while True:
        view = poll(machine, order)
        if view["status"] == "fulfilled":
            return {**view, "order_token": order["order_token"]}
        assert time.monotonic() < deadline, f"not fulfilled: {view}\n{machine.output()}"
        time.sleep(0.1)


def poll(machine: FlyMachine, order: dict[str, Any]) -> dict[str, Any]:
    response = requests.get(f"{machine.url}/api/v1/orders/{order['order_id']}",
                            headers={"Authorization": f"Bearer {order['order_token']}"}, timeout=15)
    assert response.status_code == 200, response.text
    return dict(response.json())


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective
    raise AssertionError(f"no Uid line for {pid}")


def test_a_fly_shaped_machine_migrates_sells_a_course_and_keeps_the_order_across_a_restart(
        machine: FlyMachine, sandbox: Sandbox) -> None:
    # A course, added as a creator would with the image (`docker run IMAGE lbpay courses add …`).
    added = machine.run("lbpay", "courses", "add", "cpp-primer-5th", "--title", "C++ Primer 第5版",
                        "--price-fen", "9900")
    assert added.returncode == 0, added.stderr[-3000:]
    assert "applied migrations 1," in added.stdout  # the entrypoint migrated the empty volume first

    first = machine.start()
    try:
        assert process_uid(first.pid) == machine.uid  # gunicorn runs as the service user, not root
        bought = buy(machine, sandbox)
        assert bought["license"]["key"]
    finally:
        machine.stop(first)
    assert first.returncode == 0, machine.output()

    # The secrets the app read: private copies, whatever mode Fly gave the originals.
    private = machine.base / MOVED["/run/lbpay-secrets"]
    assert stat.S_IMODE(private.stat().st_mode) == 0o700 and private.stat().st_uid == machine.uid
    for name in ("LBPAY_WECHATPAY_MERCHANT_KEY_FILE", "LBPAY_WECHATPAY_PUBLIC_KEY_FILE", "LBPAY_LICENSE_KEY_FILE"):
        copy = Path(machine.env[name])
        assert copy.parent == private, name
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and copy.stat().st_uid == machine.uid, name
        original = machine.base / MOVED["/run/secrets"] / copy.name
        assert stat.S_IMODE(original.stat().st_mode) == 0o644 and copy.read_bytes() == original.read_bytes()
    database = machine.volume / "lbpay.db"
    assert database.stat().st_uid == machine.uid and machine.volume.stat().st_uid == machine.uid

    # A restart (a deploy, `fly machine restart`): the order and its license are still there.
    second = machine.start()
    try:
        again = poll(machine, bought)
        assert again["status"] == "fulfilled" and again["license"]["key"] == bought["license"]["key"]
    finally:
        machine.stop(second)
    second_log = machine.logs[-1].read_text(errors="replace")
    assert "database ready" in second_log and "applied migrations" not in second_log, second_log[-3000:]


def test_a_release_machine_with_sqlite_runs_nothing_and_leaves_no_database(machine: FlyMachine) -> None:
    # Fly's release machine: ENTRYPOINT with release_command as its command, RELEASE_COMMAND=1, no volume.
    shutil.rmtree(machine.volume)
    done = machine.run("lbpay", "init", RELEASE_COMMAND="1")
    assert done.returncode == 0, done.stderr
    assert "not run" in done.stderr and "volume" in done.stderr
    assert not machine.volume.exists()  # no throwaway database was made
