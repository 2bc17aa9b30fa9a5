"""Real processes for the reliability suite: the sandbox over TLS, our app under gunicorn, and buyers."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from servers import free_port, loopback_certificate, private_pem, public_pem, write_secret

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
PUBLIC_KEY_ID = "PUB_KEY_ID_0112300001092026112600000000000042"
MERCHANT_SERIAL = "3775B6A45ACD588826D15E583A95F5DD99311C6B"
SHOP_ORIGIN = "https://shop.test"
ALIPAY_APP_ID = "2021000000000042"
ALIPAY_SELLER_ID = "2088000000000042"
COURSE = "cpp-primer-5th"
PRICE_FEN = 9900


@dataclass(frozen=True)
class Material:
    """Keys and a TLS certificate made for one run, as files the processes read."""

    folder: Path
    merchant_key_file: Path
    merchant_public_key_file: Path
    platform_key_file: Path
    platform_public_key_file: Path
    license_key_file: Path
    tls_cert_file: Path
    tls_key_file: Path
    apiv3_key: str
    alipay_app_key_file: Path  # our Alipay app's key pair, and the simulated Alipay's own
    alipay_app_public_key_file: Path
    alipay_platform_key_file: Path
    alipay_platform_public_key_file: Path


def make_material(folder: Path) -> Material:
    """Generate the merchant, platform and license keys and a self-signed certificate for 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    make = lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)  # noqa: E731
    merchant, platform, license_key, alipay_app, alipay_platform = make(), make(), make(), make(), make()
    tls_cert_file, tls_key_file = loopback_certificate(folder)
    return Material(
        folder=folder,
        merchant_key_file=write_secret(folder / "apiclient_key.pem", private_pem(merchant)),
        merchant_public_key_file=write_secret(folder / "apiclient_pub.pem", public_pem(merchant.public_key())),
        platform_key_file=write_secret(folder / "platform_key.pem", private_pem(platform)),
        platform_public_key_file=write_secret(folder / "wechatpay_pub.pem", public_pem(platform.public_key())),
        license_key_file=write_secret(folder / "license_key.pem", private_pem(license_key)),
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        apiv3_key=uuid.uuid4().hex,
        alipay_app_key_file=write_secret(folder / "alipay_app_key.pem", private_pem(alipay_app)),
        alipay_app_public_key_file=write_secret(folder / "alipay_app_pub.pem", public_pem(alipay_app.public_key())),
        alipay_platform_key_file=write_secret(folder / "alipay_platform_key.pem", private_pem(alipay_platform)),
        alipay_platform_public_key_file=write_secret(folder / "alipay_platform_pub.pem",
                                                     public_pem(alipay_platform.public_key())),
    )


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _wait_until_up(url: str, verify: Any, process: subprocess.Popen[bytes], log: Path,
                   timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2, verify=verify).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout} s:\n{log.read_text()[-3000:]}")


class SandboxProcess:
    """The WeChat Pay simulator as its own process over TLS, delivering notifications to our app."""

    def __init__(self, material: Material, app_port: int, retry_scale: float = 0.02) -> None:
        self.material = material
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        spec = {
            "mchid": MCHID, "appid": APPID, "merchant_serial": MERCHANT_SERIAL,
            "merchant_public_key_file": str(material.merchant_public_key_file),
            "platform_key_file": str(material.platform_key_file), "apiv3_key": material.apiv3_key,
            "public_key_id": PUBLIC_KEY_ID, "retry_scale": retry_scale, "port": self.port,
            "notify_origin_map": {SHOP_ORIGIN: f"http://127.0.0.1:{app_port}"},
            "tls_cert_file": str(material.tls_cert_file), "tls_key_file": str(material.tls_key_file),
            # Alipay's simulator beside WeChat's, under /alipay on the same TLS port.
            "alipay": {"app_id": ALIPAY_APP_ID, "seller_id": ALIPAY_SELLER_ID,
                       "app_public_key_file": str(material.alipay_app_public_key_file),
                       "alipay_private_key_file": str(material.alipay_platform_key_file)},
        }
        config_file = material.folder / "sandbox.json"
        config_file.write_text(json.dumps(spec))
        self.log = material.folder / "sandbox.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("sandbox_server.py")), str(config_file)],
                cwd=ROOT, env=_child_env({}), stdout=log, stderr=subprocess.STDOUT)
        _wait_until_up(self.url + "/control/faults", str(material.tls_cert_file), self.process, self.log)

    def control(self, method: str, path: str, payload: Any = None) -> requests.Response:
        return requests.request(method, f"{self.url}/control/{path}", json=payload, timeout=30,
                                verify=str(self.material.tls_cert_file))

    def arm(self, faults: dict[str, Any]) -> None:
        response = self.control("POST", "faults", faults)
        assert response.status_code == 200, response.text

    def alipay(self, method: str, path: str, payload: Any = None) -> requests.Response:
        """The Alipay simulator's control API (under /alipay)."""
        return requests.request(method, f"{self.url}/alipay/control/{path}", json=payload, timeout=30,
                                verify=str(self.material.tls_cert_file))

    def arm_alipay(self, faults: dict[str, Any]) -> None:
        response = self.alipay("POST", "faults", faults)
        assert response.status_code == 200, response.text

    def alipay_charged(self, out_trade_no: str) -> dict[str, Any]:
        """Alipay's trade for one order, as tally reads WeChat's: a trade number only once paid."""
        response = self.alipay("GET", f"trades/{out_trade_no}")
        if response.status_code != 200:
            return {}
        trade = response.json()
        return {"transaction_id": trade["trade_no"] if trade["status"] in ("TRADE_SUCCESS", "TRADE_FINISHED")
                or (trade["status"] == "TRADE_CLOSED" and trade["refunded"] != "0.00") else None}

    def calm(self) -> None:
        """Disarm every fault (WeChat's and Alipay's)."""
        assert self.control("DELETE", "faults").status_code == 204
        assert self.alipay("POST", "reset").status_code == 200

    def orders(self) -> dict[str, dict[str, Any]]:
        return {o["out_trade_no"]: o for o in self.control("GET", "orders").json()["orders"]}

    def deliveries(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "deliveries").json()["deliveries"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class AppProcess:
    """Our app in live mode under gunicorn (several workers, scheduler on) on a fixed loopback port."""

    def __init__(self, material: Material, folder: Path, port: int, sandbox_url: str, *,
                 workers: int = 3, threads: int = 4, reconcile_seconds: int = 5,
                 settings: dict[str, str] | None = None) -> None:
        self.material, self.folder, self.port = material, folder, port
        self.url = f"http://127.0.0.1:{port}"
        self.db_file = folder / "lbpay.db"
        self.workers, self.threads = workers, threads
        self.log = folder / "gunicorn.log"
        folder.mkdir(parents=True, exist_ok=True)
        self.settings = {
            "WECHATPAY_MODE": "live",
            "INSTANCE_PATH": str(folder / "instance"),
            "DATABASE_URL": f"sqlite:///{self.db_file}",
            "SECRET_KEY": "reliability-" + uuid.uuid4().hex,
            "PUBLIC_BASE_URL": SHOP_ORIGIN,
            "WECHATPAY_API_BASE": sandbox_url,
            "WECHATPAY_MCHID": MCHID,
            "WECHATPAY_APPID": APPID,
            "WECHATPAY_MERCHANT_KEY_FILE": str(material.merchant_key_file),
            "WECHATPAY_MERCHANT_SERIAL": MERCHANT_SERIAL,
            "WECHATPAY_APIV3_KEY": material.apiv3_key,
            "WECHATPAY_PUBLIC_KEY_FILE": str(material.platform_public_key_file),
            "WECHATPAY_PUBLIC_KEY_ID": PUBLIC_KEY_ID,
            "WECHATPAY_READ_TIMEOUT": "2",
            "LICENSE_KEY_FILE": str(material.license_key_file),
            "ALIPAY_APP_ID": ALIPAY_APP_ID,
            "ALIPAY_SELLER_ID": ALIPAY_SELLER_ID,
            "ALIPAY_APP_PRIVATE_KEY_FILE": str(material.alipay_app_key_file),
            "ALIPAY_PUBLIC_KEY_FILE": str(material.alipay_platform_public_key_file),
            "ALIPAY_GATEWAY": sandbox_url + "/alipay/gateway.do",
            "SCHEDULER": "on",
            "RECONCILE_SECONDS": str(reconcile_seconds),
            # One proxy hop, as deployed: each buyer's own address arrives in X-Forwarded-For.
            "PROXY_HOPS": "1",
            **(settings or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.replicated = False

    def replicate_to(self, settings: dict[str, str]) -> None:
        """From the next start on, run through the image's entrypoint with these LBPAY_REPLICA_* settings."""
        self.settings.update({k.removeprefix("LBPAY_"): v for k, v in settings.items()})
        self.settings.update(SECRETS_FROM=str(self.folder / "no-mounted-secrets"),
                             SECRETS_DIR=str(self.folder / "secrets"),
                             RUN_UID=str(os.geteuid()), RUN_GID=str(os.getegid()))
        self.replicated = True

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        values = {**self.settings, **(extra or {})}
        return _child_env({"LBPAY_" + k: v for k, v in values.items()}
                          | {"REQUESTS_CA_BUNDLE": str(self.material.tls_cert_file)})

    def prepare(self, migrated: bool = False) -> None:
        """Create the tables (from the models, or ``migrated`` as `lbpay init` does) and put the course on sale.

        The volume-loss scenario's server starts through the entrypoint, whose `lbpay init` migrates:
        its database must have been made by the migrations.
        """
        create = "migrations.migrate()" if migrated else "models.create_tables()"
        script = (
            "import migrations, models; from app import create_app; from billing.courses import save_course\n"
            "app = create_app()\n"
            "with models.db.connection_context():\n"
            f"    {create}\n"
            f"    save_course(app.extensions['lbpay.shop'], course_id={COURSE!r}, title='C++ Primer 第5版',"
            f" price_fen={PRICE_FEN})\n")
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=self.env({"SCHEDULER": "off"}),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def start(self, crash_at: str | None = None) -> None:
        """Start gunicorn and wait until it answers; ``crash_at`` sets LBPAY_CRASH_AT."""
        extra = {"CRASH_AT": crash_at} if crash_at else {}
        server = ["app:create_app()", "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                  "--threads", str(self.threads), "--graceful-timeout", "5", "--timeout", "60", "--log-level", "warning"]
        # With a replica, as the image starts it: the entrypoint restores a lost volume, then runs
        # gunicorn under `litestream replicate -exec`.
        command = ([str(ROOT / "deploy" / "entrypoint.sh"), "gunicorn", *server] if self.replicated
                   else [sys.executable, "-m", "gunicorn", *server])
        env = self.env(extra)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        _wait_until_up(self.url + "/api/v1/courses", True, self.process, self.log, timeout=90 if self.replicated else 30)

    def replica_is_current(self) -> bool:
        """Whether Litestream confirms the replica holds the last transaction of the database and its sealed keys."""
        from operations.replica import upload_now

        socket_file = self.folder / "litestream.sock"
        return all(upload_now(socket_file, path) for path in (self.db_file, self.db_file.with_name(
            self.db_file.stem + "-keys.db")))

    def lose_volume(self) -> None:
        """Everything the app kept on disk gone (the log aside), as when a volume is lost."""
        for path in self.folder.iterdir():
            if path != self.log:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def worker_pids(self) -> set[int]:
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return {int(p) for p in path.read_text().split()}
        except OSError:
            return set()

    def kill(self) -> None:
        """SIGKILL the gunicorn master and every worker at once, as a power cut would."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None


def idempotency_hash(key: str) -> str:
    """How the server stores an Idempotency-Key (``billing.shop.hash_token("idem:" + key)``)."""
    return hashlib.sha256(("idem:" + key).encode()).hexdigest()


@dataclass
class Buyer:
    """One learner's purchase as the extension makes it: order, scan and pay, poll until licensed."""

    app_url: str
    sandbox: SandboxProcess
    key: str
    address: str = "10.0.0.1"  # the learner's own client address (per-address limits apply to it)
    retries_creation: bool = False
    method: str = "wechat"  # or "alipay": the order names it, and the buyer pays on Alipay's simulated phone
    polls: bool = True
    comes_back_after: float = 30.0  # seconds after paying that a buyer who does not poll looks again
    deadline: float = 0.0
    # Whether the server has issued a license for any of these orders, read without a poll (a poll
    # would itself fulfil the order); a buyer who does not poll looks again as soon as it is true.
    issued: Callable[[list[str]], bool] | None = None
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # out_trade_no -> order as created
    paid_at: float | None = None  # wall-clock time of the first successful payment
    licensed_at: float | None = None  # wall-clock time the license was in the buyer's hands
    license: dict[str, Any] | None = None
    license_order: str | None = None
    problems: list[str] = field(default_factory=list)

    def _create(self) -> requests.Response | None:
        try:
            body = {"course_id": COURSE, **({"method": self.method} if self.method != "wechat" else {})}
            return requests.post(self.app_url + "/api/v1/orders", json=body,
                                 headers={"Idempotency-Key": self.key, "X-Forwarded-For": self.address},
                                 timeout=20)
        except requests.RequestException as exc:
            self.problems.append(f"create: {type(exc).__name__}")
            return None

    def place(self, retry_after_cap: float = 10.0) -> bool:
        """Create the order, retrying with the same Idempotency-Key until it succeeds or time is up."""
        while time.monotonic() < self.deadline:
            if self.retries_creation:
                # A client that gave up waiting and sent the request again while the first was in flight.
                answers: list[requests.Response | None] = []
                twin = threading.Thread(target=lambda: answers.append(self._create()))
                twin.start()
                time.sleep(0.01)
                answers.append(self._create())
                twin.join()
            else:
                answers = [self._create()]
            wait = 0.5
            for response in answers:
                if response is not None and response.status_code == 201:
                    body = response.json()
                    self.orders.setdefault(body["out_trade_no"], body)
                elif response is not None:
                    self.problems.append(f"create: {response.status_code}")
                    wait = max(wait, min(float(response.headers.get("Retry-After", "1")), retry_after_cap))
            if self.orders:
                return True
            time.sleep(wait)
        return False

    def pay(self) -> None:
        """Pay every QR code this buyer was shown (a double charge would show up as two payments)."""
        for out_trade_no in list(self.orders):
            if self.method == "alipay":
                paid = self.sandbox.alipay("POST", f"trades/{out_trade_no}/pay").status_code == 200
            else:
                response = self.sandbox.control("POST", f"orders/{out_trade_no}/pay", {"result": "success"})
                paid = response.status_code == 200 and response.json()["outcome"] == "paid"
            if paid and self.paid_at is None:
                self.paid_at = time.time()

    def wait_for_license(self) -> None:
        """Poll each order as ``poll_after_ms`` says until it is final, as the extension does."""
        pending = dict(self.orders)
        while pending and time.monotonic() < self.deadline:
            wait = 1.0
            for out_trade_no, order in list(pending.items()):
                view = self.poll(order)
                if view is None:
                    continue
                if view.get("license") and self.license is None:
                    self.licensed_at = time.time()
                    self.license, self.license_order = view["license"], order["order_id"]
                if view["final"]:
                    del pending[out_trade_no]
                else:
                    wait = min(wait, view["poll_after_ms"] / 1000)
            if pending:
                time.sleep(wait)

    def poll(self, order: dict[str, Any]) -> dict[str, Any] | None:
        try:
            response = requests.get(f"{self.app_url}/api/v1/orders/{order['order_id']}",
                                    headers={"Authorization": f"Bearer {order['order_token']}",
                                             "X-Forwarded-For": self.address}, timeout=20)
        except requests.RequestException as exc:
            self.problems.append(f"poll: {type(exc).__name__}")
            return None
        if response.status_code != 200:
            self.problems.append(f"poll: {response.status_code}")
            return None
        return dict(response.json())

    def buy(self, *, already_placed: bool = False) -> None:
        """The whole purchase; a buyer who does not poll comes back once at the deadline."""
        if not already_placed and not self.place():
            return
        self.pay()
        if self.paid_at is None:
            return
        if self.polls:
            self.wait_for_license()
            return
        back = self.paid_at + self.comes_back_after
        while time.time() < back and not (self.issued is not None and self.issued(list(self.orders))):
            time.sleep(0.2)
        self.deadline = time.monotonic() + 10
        self.wait_for_license()
