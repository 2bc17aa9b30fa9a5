"""Real processes the tests start: our app under gunicorn as `make run` serves it, and Debian's Chromium."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import itertools
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
# Debian's Chromium in its headless-shell build (package chromium-headless-shell, the same Chromium
# version and Blink as package chromium): the build Playwright itself drives for headless runs. It has
# no browser UI, so a context opens no window, no address bar and no WebUI popups. Measured on this
# 2-core machine: the browser tests took 154 CPU-s with it and 216 CPU-s with the full browser.
CHROMIUM = "/usr/bin/chromium-headless-shell"
# How long a browser test waits for a state before it calls the page broken: a hang detector, not a goal.
# CI runs four test files at once on two cores beside a TypeScript build; 5-10 s waits failed there.
BROWSER_WAIT_MS = 30_000
# The flags a headless Chromium needs on a machine with a closed network and no display (Playwright
# adds its own --disable-features list; tests/test_chromium_flags.py checks it is the only one).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# `lbpay …` run from the checkout (python -c puts it on sys.path), whatever the editable install lists.
LBPAY = [sys.executable, "-c", "from cli import main; main()"]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
DEMO_COURSES: tuple[tuple[str, ...], ...] = (
    ("courses", "add", "cpp-primer-5th", "--title", "C++ Primer 第5版", "--price-fen", "9900"),
    ("courses", "add", "rust-monthly", "--title", "Rust 每月一课", "--price-fen", "2900",
     "--subscription", "--period-days", "30"),
)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    """A private key as the unencrypted PKCS#8 PEM the app reads from a key file."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: rsa.RSAPublicKey) -> bytes:
    """A public key as SPKI PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_secret(path: Path, data: bytes) -> Path:
    """Write a key file the way the app demands it: readable by its owner only."""
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def loopback_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed TLS certificate for 127.0.0.1 and localhost; returns (certificate, key) files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (write_secret(folder / "tls_cert.pem", cert.public_bytes(serialization.Encoding.PEM)),
            write_secret(folder / "tls_key.pem", private_pem(key)))


def wait_for(condition: Any, timeout: float = 30) -> Any:
    """Call ``condition`` until it returns something true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


# Ports for servers that bind later, maybe more than once (a restart): taken below the kernel's
# ephemeral range (32768 and up), which every bind to port 0 and every outgoing connection draws
# from, and from a band of its own for each pytest-xdist worker, so that between our check and the
# server's bind nobody else in this run is handed the same port.
PORT_BAND = 1500
_ports = itertools.count(random.randrange(PORT_BAND))


def free_port() -> int:
    """A loopback port nobody listens on now and no other worker of this run will hand out."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    base = 20000 + (worker % 8) * PORT_BAND
    for _ in range(PORT_BAND):
        port = base + next(_ports) % PORT_BAND
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # someone else's server
            return port
    raise RuntimeError(f"no free loopback port in {base}-{base + PORT_BAND - 1}")


@dataclass
class RunningServer:
    """Our app in a gunicorn process; its output goes to ``log``; its database is SQLite's in ``instance``."""

    base: str
    log: Path
    process: Any
    instance: Path

    def forget_address_limits(self) -> None:
        """Empty every rate limit's bucket, as if the next requests came from a learner never seen before.

        All of a module's learners reach the server from 127.0.0.1, where real ones come from addresses
        of their own: a module that places more than ten orders in a minute would otherwise be refused
        `rate_limited` by the per-address limit (billing.limits.ORDERS_PER_CLIENT).
        """
        import sqlite3

        database = sqlite3.connect(self.instance / "lbpay.db", timeout=30)
        try:
            with database:
                database.execute("DELETE FROM rate_limit")
        finally:
            database.close()

    def output(self, start: int = 0) -> str:
        with self.log.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def mark(self) -> int:
        return self.log.stat().st_size


@contextlib.contextmanager
def sandbox_mode_server(folder: Path, commands: Sequence[Sequence[str]] = DEMO_COURSES,
                        settings: dict[str, str] | None = None, *, workers: int = 1,
                        threads: int = 8) -> Iterator[RunningServer]:
    """As `make run` does it: `lbpay init`, the courses, then gunicorn with the embedded sandbox."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(LBPAY_INSTANCE_PATH=str(folder / "instance"), LBPAY_PUBLIC_BASE_URL=base, PYTHONUNBUFFERED="1")
    env.update({"LBPAY_" + name: value for name, value in (settings or {}).items()})
    log = folder / "server.log"
    # The commands run in this process (click's runner: the same app, without a Python start-up each);
    # gunicorn below is the real process.
    from conftest import command_line

    lbpay = command_line(folder / "instance", PUBLIC_BASE_URL=base)
    with log.open("ab") as out:
        for args in (("init",), *commands):
            done = lbpay(*args)
            out.write(("$ lbpay " + " ".join(args) + "\n" + done.output).encode())
            if done.exit_code != 0:
                raise RuntimeError(f"lbpay {' '.join(args)} exited {done.exit_code}:\n{log.read_text(errors='replace')}")
    out = log.open("ab")
    process = subprocess.Popen(
        [GUNICORN, "app:create_app()", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--threads", str(threads), "--graceful-timeout", "5"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = RunningServer(base, log, process, folder / "instance")
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {process.returncode} before answering:\n{server.output()}")
            try:
                if requests.get(base + "/api/v1/courses", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer {base} within 30 s:\n{server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        out.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright; its absence fails the test (nothing downloads a browser)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: `make system-deps` installs it and CJK fonts from Debian")
    from playwright.sync_api import expect

    expect.set_options(timeout=BROWSER_WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
