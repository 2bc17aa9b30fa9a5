"""Helpers for the learner-side tests: our app with extra settings, a real SMTP server, running jobs."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator

from aiosmtpd.controller import Controller
from conftest import SHOP_ORIGIN, FakeClock, Keys, LiveServer, Sandbox, Shop, live_config

import models
from app import create_app
from billing.courses import save_course
from billing.scheduler import run_job


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    """What a real SMTP server on loopback received, parsed."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.envelopes.append(envelope)
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 5) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.messages)


class SmtpServer:
    """aiosmtpd on a fixed loopback port that a test can stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=5"

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def start_shop(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock, **settings: Any) -> Shop:
    """Our app in live mode against the sandbox, with extra settings; the same two courses as ``shop``."""
    app = create_app({**live_config(tmp_path, keys, sandbox.url, **settings), "CLOCK": clock})
    with models.db.connection_context():
        models.create_tables()
        shop_ = app.extensions["lbpay.shop"]
        save_course(shop_, course_id="cpp-primer-5th", title="C++ Primer 第5版", price_fen=9900)
        save_course(shop_, course_id="rust-monthly", title="Rust 每月一课", price_fen=2900,
                    plan="subscription", period_days=30)
    server = LiveServer(app)
    sandbox.config.notify_origin_map[SHOP_ORIGIN] = server.url
    return Shop(url=server.url, app=app, sandbox=sandbox, clock=clock, keys=keys, server=server)


def run(shop: Shop, job_name: str) -> dict[str, Any]:
    """Run one scheduled job now, as the scheduler would."""
    import billing.jobs  # noqa: F401  (registers the jobs)

    with models.db.connection_context():
        summary = run_job(shop.app.extensions["lbpay.shop"], job_name, "test-runner")
    assert summary is not None, f"job {job_name} did not get its lease"
    return summary


def buy(shop: Shop, course_id: str = "cpp-primer-5th", **fields: Any) -> dict[str, Any]:
    """Place an order, pay it in the sandbox and return the fulfilled view (with the order's secrets)."""
    order = shop.order(course_id, **fields)
    shop.sandbox.pay(order["out_trade_no"])
    view = shop.wait_for_status(order, "fulfilled")
    assert view["status"] == "fulfilled", view
    return {**view, "order_token": order["order_token"], "buyer_token": order["buyer_token"]}


def outbox() -> list[models.MailOutbox]:
    with models.db.connection_context():
        return list(models.MailOutbox.select().order_by(models.MailOutbox.id))


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_text(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


# --- the server as `make run` starts it (sandbox mode, gunicorn), for the browser and the Node client ---

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunningServer:
    base: str
    log: Path
    process: Any

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def sandbox_server(folder: Path) -> Iterator[RunningServer]:
    """`lbpay init`, two courses, then gunicorn with the embedded sandbox on a free loopback port."""
    import os
    import subprocess
    import sys

    import requests

    bin_ = Path(sys.executable).parent
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(LBPAY_INSTANCE_PATH=str(folder / "instance"), LBPAY_PUBLIC_BASE_URL=base, PYTHONUNBUFFERED="1")
    log = folder / "server.log"
    # `lbpay …` run from the checkout (python -c puts it on sys.path), whatever the editable install lists.
    lbpay = [sys.executable, "-c", "from app import cli; cli(prog_name='lbpay')"]
    with log.open("ab") as out:
        for args in ([*lbpay, "init"],
                     [*lbpay, "courses", "add", "cpp-primer-5th", "--title", "C++ Primer 第5版", "--price-fen", "9900"],
                     [*lbpay, "courses", "add", "rust-monthly", "--title", "Rust 每月一课", "--price-fen", "2900",
                      "--subscription", "--period-days", "30"]):
            done = subprocess.run(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"{args} exited {done.returncode}:\n{log.read_text(errors='replace')}")
    out = log.open("ab")
    process = subprocess.Popen(
        [str(bin_ / "gunicorn"), "app:create_app()", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "8", "--graceful-timeout", "5"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = RunningServer(base, log, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {process.returncode}:\n{server.output()}")
            try:
                if requests.get(base + "/api/v1/courses", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer within 30 s:\n{server.output()}")
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
