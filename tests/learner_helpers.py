"""Helpers for the learner-side tests: our app with extra settings, a real SMTP server, running jobs."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator

from aiosmtpd.controller import Controller
from conftest import Shop, start_shop  # noqa: F401  (start_shop is used by the learner tests)
from servers import free_port

import models
from operations.scheduler import run_job


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

    def wait_for(self, count: int, timeout: float = 30) -> list[EmailMessage]:
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


def run(shop: Shop, job_name: str) -> dict[str, Any]:
    """Run one scheduled job now, as the scheduler would."""

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


