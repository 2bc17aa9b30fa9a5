"""License mails leave through the outbox to a real SMTP server on loopback, and a dead server loses none."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from conftest import FakeClock, Keys, Sandbox, Shop
from learner_helpers import SmtpServer, buy, html_text, outbox, plain_text, run, smtp_server, start_shop

import models
from app import create_app
from billing.mail import MailSettingError, enqueue_mail, parse_smtp_url, retry_delay
from database import write_transaction
from settings import ConfigError


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from smtp_server()


@pytest.fixture
def mail_shop(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock, smtp: SmtpServer) -> Iterator[Shop]:
    shop = start_shop(tmp_path, keys, sandbox, clock, SMTP_URL=smtp.url,
                      MAIL_FROM="Learning Buddy <courses@learning-buddy.test>")
    yield shop
    shop.server.stop()


def test_a_fulfilled_order_with_an_email_mails_the_license_with_the_key_on_one_line(
        mail_shop: Shop, smtp: SmtpServer) -> None:
    view = buy(mail_shop, email="learner@example.com")
    queued = outbox()
    assert [(m.kind, m.to, m.sent_at) for m in queued] == [("license", "learner@example.com", None)]

    assert run(mail_shop, "mail") == {"sent": 1, "failed": 0}
    [message] = smtp.inbox.wait_for(1)
    assert smtp.inbox.envelopes[0].rcpt_tos == ["learner@example.com"]
    assert smtp.inbox.envelopes[0].mail_from == "courses@learning-buddy.test"
    assert message["To"] == "learner@example.com"
    assert "许可证" in message["Subject"] and "license" in message["Subject"]
    assert message.get_content_type() == "multipart/alternative"

    key = view["license"]["key"]
    text = plain_text(message)
    assert key in text.splitlines(), "the key must stand alone on one line"
    assert "许可证" in text and "Valid until" in text
    assert view["order_id"] in text and view["license"]["id"] in text
    html = html_text(message)
    assert f'<code class="license-key">{key}</code>' in html
    assert "<script" not in html

    [sent] = outbox()
    assert sent.sent_at is not None and sent.attempts == 1 and sent.next_attempt_at is None
    # Nothing is due any more: a second run sends nothing.
    assert run(mail_shop, "mail") == {"sent": 0}
    assert len(smtp.inbox.messages) == 1


def test_an_order_without_an_email_queues_no_mail(mail_shop: Shop) -> None:
    buy(mail_shop)
    assert outbox() == []


def test_a_dead_mail_server_delays_mail_without_losing_it(mail_shop: Shop, smtp: SmtpServer) -> None:
    smtp.stop()
    view = buy(mail_shop, email="learner@example.com")  # the purchase does not wait for mail
    assert view["license"] is not None

    summary = run(mail_shop, "mail")
    assert summary["sent"] == 0 and summary["deferred"] == 1
    [waiting] = outbox()
    assert waiting.sent_at is None and waiting.attempts == 1
    assert waiting.next_attempt_at > mail_shop.clock() + dt.timedelta(seconds=20)
    assert "ConnectionRefusedError" in waiting.last_error

    # Still down, and not due yet: the job does not hammer the server.
    assert run(mail_shop, "mail") == {"sent": 0}
    mail_shop.clock.advance(31)
    assert run(mail_shop, "mail")["deferred"] == 1
    [waiting] = outbox()
    assert waiting.attempts == 2
    assert waiting.next_attempt_at >= mail_shop.clock() + dt.timedelta(seconds=59)  # backed off further

    smtp.start()
    assert run(mail_shop, "mail") == {"sent": 0}  # still waiting out the back-off
    mail_shop.clock.advance(61)
    assert run(mail_shop, "mail") == {"sent": 1, "failed": 0}
    [message] = smtp.inbox.wait_for(1)
    assert view["license"]["key"] in plain_text(message).splitlines()
    [sent] = outbox()
    assert sent.sent_at is not None and sent.attempts == 3 and sent.last_error is None


def test_a_refused_recipient_is_given_up_without_blocking_the_others(mail_shop: Shop, smtp: SmtpServer) -> None:
    class Picky:
        async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
            if address.startswith("nobody@"):
                return "550 no such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        handle_DATA = smtp.inbox.handle_DATA

    smtp.stop()
    from aiosmtpd.controller import Controller

    picky = Controller(Picky(), hostname="127.0.0.1", port=smtp.port)
    picky.start()
    try:
        now = mail_shop.clock()
        with models.db.connection_context(), write_transaction():
            enqueue_mail(to="nobody@example.com", subject="a", text="a", kind="test", now=now)
            enqueue_mail(to="somebody@example.com", subject="b", text="b", kind="test", now=now)
        assert run(mail_shop, "mail") == {"sent": 1, "failed": 1}
    finally:
        picky.stop()
    refused, delivered = outbox()
    assert refused.sent_at is None and refused.next_attempt_at is None
    assert refused.last_error.startswith("gave up: SMTPRecipientsRefused")
    assert delivered.sent_at is not None
    assert [m["To"] for m in smtp.inbox.messages] == ["somebody@example.com"]


def test_a_dedupe_key_queues_a_mail_once(mail_shop: Shop) -> None:
    now = mail_shop.clock()
    with models.db.connection_context():
        with write_transaction():
            first = enqueue_mail(to="a@example.com", subject="s", text="t", kind="alert", now=now,
                                 dedupe_key="alert:x:1")
        with write_transaction():
            second = enqueue_mail(to="a@example.com", subject="s", text="t", kind="alert", now=now,
                                  dedupe_key="alert:x:1")
    assert first is not None and second is None
    assert len(outbox()) == 1


def test_a_header_with_a_line_break_is_refused(mail_shop: Shop) -> None:
    with models.db.connection_context(), write_transaction(), pytest.raises(ValueError):
        enqueue_mail(to="a@example.com\r\nBcc: x@example.com", subject="s", text="t", kind="x",
                     now=mail_shop.clock())


def test_without_an_smtp_url_mail_waits_in_the_outbox(shop: Shop) -> None:
    buy(shop, email="learner@example.com")
    assert run(shop, "mail") == {"sent": 0, "waiting_without_smtp": 1}
    [waiting] = outbox()
    assert waiting.sent_at is None and waiting.attempts == 0


def test_the_back_off_doubles_up_to_an_hour() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(30) == dt.timedelta(hours=1)


@pytest.mark.parametrize("url, expected", [
    ("smtp://mail.example.com", ("mail.example.com", 25, False, False, None, None)),
    ("smtp://u%40x:p%3Ass@mail.example.com:2525?starttls=1",
     ("mail.example.com", 2525, False, True, "u@x", "p:ss")),
    ("smtp://mail.example.com?starttls=1", ("mail.example.com", 587, False, True, None, None)),
    ("smtps://user:secret@smtp.qq.com", ("smtp.qq.com", 465, True, False, "user", "secret")),
])
def test_smtp_urls_are_read(url: str, expected: tuple) -> None:
    s = parse_smtp_url(url)
    assert (s.host, s.port, s.implicit_tls, s.starttls, s.username, s.password) == expected
    assert "secret" not in repr(s)


@pytest.mark.parametrize("url", [
    "http://mail.example.com", "smtp://", "smtp://h/path", "smtp://h?tls=1", "smtp://h?starttls=maybe",
    "smtps://h?starttls=1", "smtp://h?timeout=0", "smtp://h:notaport",
])
def test_bad_smtp_urls_are_refused(url: str) -> None:
    with pytest.raises(MailSettingError):
        parse_smtp_url(url)


def test_the_app_refuses_a_bad_mail_setting_by_name(tmp_path: Path) -> None:
    base = {"INSTANCE_PATH": str(tmp_path), "SCHEDULER": "off"}
    with pytest.raises(ConfigError, match="LBPAY_SMTP_URL"):
        create_app({**base, "SMTP_URL": "mail.example.com"})
    with pytest.raises(ConfigError, match="LBPAY_MAIL_FROM"):
        create_app({**base, "SMTP_URL": "smtp://mail.example.com"})
    with pytest.raises(ConfigError, match="LBPAY_RENEWAL_REMINDER_DAYS"):
        create_app({**base, "RENEWAL_REMINDER_DAYS": "0"})


# --- one click from the mail into VS Code (issue 18, item 2) -----------------------------------------

def vscode_link(key: str, extension: str = "learning-primer-buddy-dev.learning-primer-buddy") -> str:
    return f"vscode://{extension}/activate?key={quote(key, safe='')}"


def test_the_license_mail_opens_the_license_in_vscode_with_one_click(mail_shop: Shop, smtp: SmtpServer) -> None:
    key = buy(mail_shop, email="learner@example.com")["license"]["key"]
    run(mail_shop, "mail")
    [message] = smtp.inbox.wait_for(1)

    text, html = plain_text(message), html_text(message)
    assert vscode_link(key) in text.splitlines(), "the link stands alone on its line, so a mail reader links it"
    assert key in text.splitlines(), "and the key, for pasting"
    assert "在 VS Code 中打开 · Open in VS Code" in text
    link = vscode_link(key).replace("&", "&amp;")
    assert f'<a class="open-in-vscode" href="{link}"' in html
    assert "在 VS Code 中打开 · Open in VS Code</a>" in html
    # The key survives the trip: what the handler reads back from the link is the key.
    query = parse_qs(urlsplit(vscode_link(key)).query)
    assert query == {"key": [key]}


def test_the_extension_id_in_the_link_is_a_setting(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock,
                                                   smtp: SmtpServer) -> None:
    shop = start_shop(tmp_path, keys, sandbox, clock, SMTP_URL=smtp.url, MAIL_FROM="courses@learning-buddy.test",
                      VSCODE_EXTENSION_ID="acme-learning.cpp-course")
    try:
        key = buy(shop, email="learner@example.com")["license"]["key"]
        assert shop.post("/api/v1/licenses/resend", {"email": "learner@example.com"}).status_code == 202
        run(shop, "mail")
        messages = smtp.inbox.wait_for(2)
        assert len(messages) == 2
        for message in messages:  # the license mail and the one asked for again
            assert vscode_link(key, "acme-learning.cpp-course") in plain_text(message).splitlines()
            assert "learning-primer-buddy-dev" not in plain_text(message)
    finally:
        shop.server.stop()


@pytest.mark.parametrize("value", ["no-publisher", "a.b.c", "acme/../x.y", "acme.x y", ".name", "publisher."])
def test_a_malformed_extension_id_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="LBPAY_VSCODE_EXTENSION_ID"):
        create_app({"INSTANCE_PATH": str(tmp_path), "SCHEDULER": "off", "VSCODE_EXTENSION_ID": value})
