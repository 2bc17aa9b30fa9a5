"""Fixtures: real servers on loopback — the WeChat Pay sandbox over TLS and our app in live mode."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from servers import chromium, loopback_certificate, private_pem, public_pem, write_secret
from werkzeug.serving import make_server

import app as app_module
import models
from app import create_app
from billing import admin_users
from wechatpay import crypto
from wechatpay.sandbox import SandboxConfig, create_sandbox_app

UTC = dt.timezone.utc
MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
PUBLIC_KEY_ID = "PUB_KEY_ID_0112300001092026112600000000000042"
SHOP_ORIGIN = "https://shop.test"
APIV3_KEY = b"k3yOfThirtyTwoBytesForTests00001"


# The names the tests use for the shared helpers.
pem_private, pem_public = private_pem, public_pem


# A sign-in's argon2id hash costs about 0.25 CPU-s at the shipped parameters, and the suite signs in and
# creates accounts some hundreds of times. Apps in this process hash with argon2id at its cheapest; every
# `lbpay` and gunicorn process the tests start keeps the shipped parameters, which
# test_admin_create_reads_the_password_file_without_its_newline reads back from a stored hash.
admin_users._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


class KeyPool:
    """RSA-2048 keys made once per test process, handed out in turn where a sandbox instance makes its keys.

    An instance folder in sandbox mode makes five keys on its first start (the simulated merchant and
    platform of each payment service, and the license key), about 50 ms of CPU each, and then parses
    each at about 35 ms. Tests start some hundreds of such folders: each gets real keys made by the
    tests, drawn in turn from eight, so the five of one folder always differ, and parsing a key the
    process has parsed before is free (wechatpay.crypto and licensing keep parsed keys by their PEM).
    `lbpay` and gunicorn processes the tests start make their own, as a creator's would.
    """

    SIZE = 8

    def __init__(self) -> None:
        self._pems: list[bytes] = []
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            if len(self._pems) < self.SIZE:
                self._pems.append(_make_private_key_pem())
            pem = self._pems[self._next % self.SIZE]
            self._next += 1
            return pem


_make_private_key_pem = app_module.generate_private_key_pem
app_module.generate_private_key_pem = KeyPool()  # type: ignore[assignment]


@dataclass(frozen=True)
class Keys:
    merchant: rsa.RSAPrivateKey
    platform: rsa.RSAPrivateKey
    license: rsa.RSAPrivateKey
    forger: rsa.RSAPrivateKey
    merchant_serial: str = "3775B6A45ACD588826D15E583A95F5DD99311C6B"


@pytest.fixture(scope="session")
def keys() -> Keys:
    """RSA keys made by the tests, once per session (never committed)."""
    make = lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)  # noqa: E731
    return Keys(merchant=make(), platform=make(), license=make(), forger=make())


@dataclass
class Tls:
    ca_file: Path
    context: ssl.SSLContext


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    """A self-signed certificate for 127.0.0.1, trusted through REQUESTS_CA_BUNDLE as in production."""
    cert_file, key_file = loopback_certificate(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
        yield Tls(ca_file=cert_file, context=context)


@pytest.fixture(scope="session")
def _chromium_process() -> Iterator[Any]:
    """One Chromium per test process: a launch costs about a CPU-second, and 20 modules drive it."""
    try:
        with chromium() as started:
            yield started
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def browser(_chromium_process: Any) -> Iterator[Any]:
    """Debian's Chromium under Playwright for one module; whatever context the module left open is closed."""
    assert _chromium_process.is_connected(), "Chromium went away during an earlier module"
    yield _chromium_process
    for context in list(_chromium_process.contexts):
        context.close()


class ModelsBinding:
    """Who uses the models' one database binding (``models.db``, one per process).

    Requests to our app on a live server share it; an `lbpay` command run in this process rebinds it
    to its own app's database, so it waits for those requests to finish and holds them off meanwhile.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._requests = 0
        self._command = False

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._command)
            self._requests += 1
        try:
            yield
        finally:
            with self._changed:
                self._requests -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def command(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._command and self._requests == 0)
            self._command = True
        try:
            yield
        finally:
            with self._changed:
                self._command = False
                self._changed.notify_all()


MODELS_BINDING = ModelsBinding()


class LiveServer:
    """A WSGI app served by werkzeug's threaded server on a loopback port, in a thread."""

    def __init__(self, app: Any, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.uses_models = "lbpay.shop" in getattr(app, "extensions", {})  # our app, not the sandbox
        self.server = make_server("127.0.0.1", 0, self._dispatch, threaded=True, ssl_context=ssl_context)
        self.server.daemon_threads = True
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.uses_models:
            return self.app(environ, start_response)
        with MODELS_BINDING.request():
            # The whole body is made here, so the request is over when the binding is let go.
            body = self.app(environ, start_response)
            try:
                return list(body)
            finally:
                if hasattr(body, "close"):
                    body.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeClock:
    """Real time plus an offset the test can move; returns aware UTC datetimes."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen: float | None = None

    def _now(self) -> float:
        return (self.frozen if self.frozen is not None else time.time()) + self.offset

    def __call__(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._now(), UTC)

    def timestamp(self) -> int:
        return int(self._now())

    def freeze(self) -> None:
        """Stop time at the current whole second, for tests of exact boundaries."""
        self.frozen = float(int(time.time()))

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Sandbox:
    url: str
    app: Any
    config: SandboxConfig
    server: LiveServer

    @property
    def state(self) -> Any:
        return self.app.extensions["wechatpay_sandbox"]

    def control(self, method: str, path: str, payload: Any = None) -> requests.Response:
        response = requests.request(method, f"{self.url}/control/{path}", json=payload, timeout=10)
        return response

    def pay(self, out_trade_no: str, result: str = "success") -> None:
        response = self.control("POST", f"orders/{out_trade_no}/pay", {"result": result})
        assert response.status_code == 200, response.text

    def requests_log(self) -> list[dict[str, Any]]:
        return self.control("GET", "requests").json()["requests"]

    def deliveries(self) -> list[dict[str, Any]]:
        return self.control("GET", "deliveries").json()["deliveries"]


def serve_sandbox(keys: Keys, tls: Tls, **overrides: Any) -> Sandbox:
    """Start a sandbox over TLS for our merchant, with keys the tests made and any setting overridden."""
    settings: dict[str, Any] = dict(
        mchid=MCHID, appid=APPID, merchant_public_key_pem=pem_public(keys.merchant.public_key()),
        merchant_serial=keys.merchant_serial, apiv3_key=APIV3_KEY,
        platform_private_key_pem=pem_private(keys.platform), public_key_id=PUBLIC_KEY_ID)
    settings.update(overrides)
    config = SandboxConfig(**settings)
    app = create_sandbox_app(config)
    server = LiveServer(app, ssl_context=tls.context)
    return Sandbox(url=server.url, app=app, config=config, server=server)


@pytest.fixture
def sandbox(keys: Keys, tls: Tls) -> Iterator[Sandbox]:
    """The WeChat Pay simulator over TLS on its own port, with keys the tests made."""
    config = SandboxConfig(
        mchid=MCHID, appid=APPID,
        merchant_public_key_pem=pem_public(keys.merchant.public_key()),
        merchant_serial=keys.merchant_serial, apiv3_key=APIV3_KEY,
        platform_private_key_pem=pem_private(keys.platform), public_key_id=PUBLIC_KEY_ID,
        retry_scale=0.01)
    app = create_sandbox_app(config)
    server = LiveServer(app, ssl_context=tls.context)
    yield Sandbox(url=server.url, app=app, config=config, server=server)
    app.extensions["wechatpay_sandbox"].stop()
    server.stop()


# `make test-postgres` sets this to a PostgreSQL server on loopback. Each xdist worker gets a database
# of its own (PostgreSQL's advisory locks, our write lock among them, are per database: workers sharing
# one would queue behind each other's tests), and each test a fresh schema in it.
TEST_DATABASE_URL = os.environ.get("LBPAY_TEST_DATABASE_URL")
sqlite_only = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite-only: runs in `make test`")
_RUN = uuid.uuid4().hex[:8]  # schemas of an earlier run on the same server are never reused
_WORKER_DATABASES: dict[str, str] = {}
_WORKER_DATABASES_LOCK = threading.Lock()  # benches of one test ask from threads of their own


def _worker_database_url() -> str:
    """TEST_DATABASE_URL, or under xdist its database with the worker's name appended (made once)."""
    assert TEST_DATABASE_URL
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return TEST_DATABASE_URL
    with _WORKER_DATABASES_LOCK:
        if worker not in _WORKER_DATABASES:
            _WORKER_DATABASES[worker] = _make_database(worker)
    return _WORKER_DATABASES[worker]


def _make_database(worker: str) -> str:
    """Create the database of one xdist worker on TEST_DATABASE_URL's server (if missing); return its URL."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    assert TEST_DATABASE_URL
    parts = urlsplit(TEST_DATABASE_URL)
    name = f"{parts.path.lstrip('/')}_{worker}"
    connection = psycopg2.connect(TEST_DATABASE_URL)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')  # noqa: S608  (the worker's name, gw0…)
    finally:
        connection.close()
    return urlunsplit(parts._replace(path="/" + name))


def database_url_for(tmp_path: Path) -> str:
    """The database of one test: a SQLite file in its folder, or its own PostgreSQL schema."""
    if not TEST_DATABASE_URL:
        return f"sqlite:///{tmp_path / 'lbpay.db'}"
    import hashlib

    import psycopg2

    url = _worker_database_url()
    schema = "t_" + hashlib.sha1(f"{_RUN}:{tmp_path}".encode()).hexdigest()[:16]
    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')  # noqa: S608  (a hex name we made)
    finally:
        connection.close()
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def another_writer(url: str) -> Any:
    """A connection of another process that takes the write lock (it holds it until rolled back)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        holder = sqlite3.connect(url[len("sqlite:///"):], timeout=1)
        holder.execute("BEGIN IMMEDIATE")
        return holder
    import psycopg2

    from database import WRITE_LOCK_KEY

    holder = psycopg2.connect(url)
    holder.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
    return holder


def live_config(tmp_path: Path, keys: Keys, sandbox_url: str, **overrides: Any) -> dict[str, Any]:
    """The settings of our app in live mode against the sandbox, as a deployment would set them."""
    config: dict[str, Any] = {
        "WECHATPAY_MODE": "live",
        "SCHEDULER": "off",
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": database_url_for(tmp_path),
        "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
        "PUBLIC_BASE_URL": SHOP_ORIGIN,
        "WECHATPAY_API_BASE": sandbox_url,
        "WECHATPAY_MCHID": MCHID,
        "WECHATPAY_APPID": APPID,
        "WECHATPAY_MERCHANT_KEY_FILE": str(write_secret(tmp_path / "apiclient_key.pem", pem_private(keys.merchant))),
        "WECHATPAY_MERCHANT_SERIAL": keys.merchant_serial,
        "WECHATPAY_APIV3_KEY": APIV3_KEY.decode(),
        "WECHATPAY_PUBLIC_KEY_FILE": str(write_secret(tmp_path / "wechatpay_pub.pem",
                                                      pem_public(keys.platform.public_key()))),
        "WECHATPAY_PUBLIC_KEY_ID": PUBLIC_KEY_ID,
        "LICENSE_KEY_FILE": str(write_secret(tmp_path / "license_key.pem", pem_private(keys.license))),
    }
    config.update(overrides)
    return config


@dataclass
class Shop:
    """Our app served on loopback in live mode, with helpers that act as the extension."""

    url: str
    app: Any
    sandbox: Sandbox
    clock: FakeClock
    keys: Keys
    server: LiveServer
    session: requests.Session = field(default_factory=requests.Session)

    def post(self, path: str, payload: Any = None, token: str | None = None, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.post(self.url + path, json=payload, headers=headers, timeout=15, **kw)

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.get(self.url + path, headers=headers, timeout=15, **kw)

    def order(self, course_id: str = "cpp-primer-5th", **fields: Any) -> dict[str, Any]:
        response = self.post("/api/v1/orders", {"course_id": course_id, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    def poll(self, order: dict[str, Any]) -> dict[str, Any]:
        response = self.get(f"/api/v1/orders/{order['order_id']}", token=order["order_token"])
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for_status(self, order: dict[str, Any], status: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.poll(order)
            if view["status"] == status or time.monotonic() > deadline:
                return view
            time.sleep(0.05)

    def notify(self, note: "SignedNotification") -> requests.Response:
        return self.session.post(self.url + "/wechatpay/notify/transaction", data=note.body,
                                 headers=note.headers, timeout=15)


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    """Extra settings for the ``shop`` fixture; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
def shop(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock,
         shop_settings: dict[str, Any]) -> Iterator[Shop]:
    """Our app in live mode on a loopback port, talking TLS to the sandbox; two courses for sale."""
    started = start_shop(tmp_path, keys, sandbox, clock, **shop_settings)
    yield started
    started.server.stop()


def start_shop(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock, **settings: Any) -> Shop:
    """Start our app in live mode against the sandbox, with extra settings and the two demo courses."""
    from billing.courses import save_course

    app = create_app({**live_config(tmp_path, keys, sandbox.url), "CLOCK": clock, **settings})
    with models.db.connection_context():
        models.create_tables()
        shop_ = app.extensions["lbpay.shop"]
        save_course(shop_, course_id="cpp-primer-5th", title="C++ Primer 第5版", price_fen=9900)
        save_course(shop_, course_id="rust-monthly", title="Rust 每月一课", price_fen=2900,
                    plan="subscription", period_days=30)
    server = LiveServer(app)
    sandbox.config.notify_origin_map[SHOP_ORIGIN] = server.url
    return Shop(url=server.url, app=app, sandbox=sandbox, clock=clock, keys=keys, server=server)


@dataclass
class SignedNotification:
    headers: dict[str, str]
    body: bytes
    transaction: dict[str, Any]


def transaction_for(order: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A paid transaction object for one of our orders, as WeChat would describe it."""
    tx: dict[str, Any] = {
        "appid": APPID, "mchid": MCHID, "out_trade_no": order["out_trade_no"],
        "transaction_id": "42000" + uuid.uuid4().hex[:27], "trade_type": "NATIVE",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
        "success_time": "2026-11-26T10:00:00+08:00", "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": order["amount_fen"], "payer_total": order["amount_fen"],
                   "currency": "CNY", "payer_currency": "CNY"},
    }
    tx.update(overrides)
    return tx


@pytest.fixture
def make_notification(keys: Keys, clock: FakeClock) -> Callable[..., SignedNotification]:
    """Build a signed, encrypted payment notification; every part can be overridden."""

    def make(order: dict[str, Any] | None = None, *, transaction: dict[str, Any] | None = None,
             plaintext: bytes | None = None, timestamp: str | None = None, nonce: str | None = None,
             serial: str = PUBLIC_KEY_ID, signature: str | None = None,
             signing_key: rsa.RSAPrivateKey | None = None, apiv3_key: bytes = APIV3_KEY,
             associated_data: str = "transaction", decrypt_aad: str | None = None,
             tamper: str | None = None, event_type: str = "TRANSACTION.SUCCESS",
             envelope: dict[str, Any] | None = None, signature_type: str | None = None,
             **tx_overrides: Any) -> SignedNotification:
        tx = transaction if transaction is not None else transaction_for(order or {}, **tx_overrides)
        if plaintext is None:
            plaintext = json.dumps(tx, ensure_ascii=False, separators=(",", ":")).encode()
        gcm_nonce = crypto.make_nonce(12)
        ciphertext = crypto.aead_encrypt(apiv3_key, gcm_nonce, associated_data, plaintext)
        if tamper == "ciphertext":
            raw = bytearray(base64.b64decode(ciphertext))
            raw[0] ^= 0x01
            ciphertext = base64.b64encode(bytes(raw)).decode()
        elif tamper == "tag":
            raw = bytearray(base64.b64decode(ciphertext))
            raw[-1] ^= 0x01
            ciphertext = base64.b64encode(bytes(raw)).decode()
        doc = envelope if envelope is not None else {
            "id": str(uuid.uuid4()), "create_time": "2026-11-26T10:00:00+08:00",
            "resource_type": "encrypt-resource", "event_type": event_type, "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": ciphertext,
                         "associated_data": decrypt_aad if decrypt_aad is not None else associated_data,
                         "nonce": "x" * 12 if tamper == "nonce" else gcm_nonce},
        }
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        ts = timestamp if timestamp is not None else str(clock.timestamp())
        nonce_ = nonce or crypto.make_nonce(32)
        sig = signature if signature is not None else crypto.sign(
            signing_key or keys.platform, crypto.response_message(ts, nonce_, body))
        headers = {"Content-Type": "application/json", "Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce_,
                   "Wechatpay-Signature": sig, "Wechatpay-Serial": serial}
        if signature_type is not None:
            headers["Wechatpay-Signature-Type"] = signature_type
        return SignedNotification(headers=headers, body=body, transaction=tx)

    return make


def db_counts() -> dict[str, int]:
    """How many rows the tables that money touches hold."""
    with models.db.connection_context():
        return {"licenses": models.License.select().count(),
                "paid": models.Order.select().where(models.Order.transaction_id.is_null(False)).count(),
                "flagged": models.Order.select().where(models.Order.flag.is_null(False)).count()}


# --- In process, flaskr style: no socket, no child process -------------------------------------------
# Real servers stay where the network is the point (TLS to the sandbox, gunicorn, Chromium, crashes,
# notifications the sandbox delivers); the rest runs through Flask's test client and click's runner.


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget every LBPAY_* variable of the shell that started pytest (`make` exports one), for this test."""
    for name in list(os.environ):
        if name.startswith("LBPAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def app_settings() -> dict[str, Any]:
    """Extra settings for the ``app`` fixture; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_settings: dict[str, Any]) -> Flask:
    """Our app as `lbpay` builds it with nothing configured (sandbox mode), its instance folder in tmp_path."""
    clean_environment(monkeypatch)
    return create_app({"INSTANCE_PATH": str(tmp_path / "instance"), **app_settings}, command_line=True)


@pytest.fixture
def client(app: Flask) -> Any:
    """Flask's test client for ``app``: requests without a socket."""
    return app.test_client()


class Lbpay(CliRunner):
    """`lbpay` commands run in this process by click's runner, as the entry point runs them.

    ``make_app`` builds the app each command loads (the test's app, or a new one per command as a new
    process would build it); the variables in ``env`` (and no other LBPAY_*) are set while it runs.
    An exception that would be a traceback in a terminal is raised in the test, never swallowed.
    """

    def __init__(self, make_app: Callable[[], Flask] | None = None, env: dict[str, str] | None = None) -> None:
        super().__init__()
        self.make_app, self.env = make_app, env or {}

    def __call__(self, *args: str, input: str | None = None) -> Result:
        from flask.cli import ScriptInfo

        from cli import cli

        env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("LBPAY_")}
        env.update(self.env)
        extra: dict[str, Any] = {} if self.make_app is None else {"obj": ScriptInfo(create_app=self.make_app)}
        with MODELS_BINDING.command():
            bound = models.db.obj
            try:
                return self.invoke(cli, list(args), input=input, env=env, prog_name="lbpay",
                                   catch_exceptions=False, **extra)
            finally:
                # A command's own app rebinds the models; a live server of the same test keeps its database.
                if bound is not None:
                    models.db.initialize(bound)


@pytest.fixture
def runner(app: Flask) -> Lbpay:
    """`lbpay` commands against the test's ``app`` (click's runner, like ``app.test_cli_runner()``)."""
    return Lbpay(lambda: app)


def command_line(instance: Path, **settings: str) -> Lbpay:
    """`lbpay` as a creator runs it with these LBPAY_* settings: each command builds its own app, like a new process."""
    env = {"LBPAY_INSTANCE_PATH": str(instance), **{"LBPAY_" + k: v for k, v in settings.items()}}
    return Lbpay(env=env)


# Whole-toolchain runs, each with a target of its own as well: the reliability run's short form
# (`make reliability`), the kit's TypeScript builds and Node tests (`make test-vscode`), schemathesis
# over the API, Litestream's restore, and `make run` itself. `make test-long` runs them and `.ci/run`
# runs it after `make test`; they are 7 of the suite's files and about a fifth of its CPU time.
LONG_RUNNING = ("test_reliability.py", "test_vscode_kit.py", "test_kit_apply.py", "test_fuzz_api.py",
                "test_replica.py", "test_quiet_terminal.py", "test_alipay_kit_page.py")

# The modules that take longest on a busy machine (measured: the sum of their tests' durations with
# the machine at load 25) start first: `make test` hands whole files to its workers in this order
# (--dist loadfile --no-loadscope-reorder), so none of them is left running alone at the end.
LONGEST_FIRST = (*LONG_RUNNING, "test_provider.py", "test_seats.py", "test_documents.py",
                 "test_console_browser.py", "test_browser.py", "test_complaints.py", "test_learner_api.py",
                 "test_sandbox_guard.py", "test_console_more_browser.py", "test_reconcile.py",
                 "test_errors_catalogue.py", "test_webhooks.py", "test_known_browser.py", "test_wechat_billing.py",
                 "test_wechat_edges.py", "test_backup.py", "test_contract.py", "test_notify.py",
                 "test_crash_safety.py", "test_receipts_browser.py", "test_console_pages.py", "test_admin_browser.py")


@pytest.hookimpl(tryfirst=True)  # before -m reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the LONG_RUNNING modules ``long``; run the modules of LONGEST_FIRST first, in that order."""
    for item in items:
        if item.path.name in LONG_RUNNING:
            item.add_marker(pytest.mark.long)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a file is kept


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


# Files that test what only PostgreSQL does (two servers on one database, READ COMMITTED races).
POSTGRESQL_ONLY = ("test_two_servers.py", "test_postgres.py")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave the PostgreSQL-only tests out of a SQLite run (`make test-postgres` runs them): not a skip."""
    if collection_path.name in POSTGRESQL_ONLY and not TEST_DATABASE_URL:
        return True
    return None
