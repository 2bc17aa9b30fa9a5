"""Same e-mail, new device, never pays twice (issue 18, item 3): an order placed with an address that
already holds an active license for the course is still a 201 (no ownership oracle), and the address
gets its license by mail at once; every answer given an e-mail says so, in Chinese and English."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import FakeClock, Keys, Sandbox, Shop
from learner_helpers import SmtpServer, buy, outbox, plain_text, run, smtp_server, start_shop

import models
from billing.licenses import revoke_license
from billing.limits import RESEND_PER_ADDRESS
from test_openapi import check

OWNER = "owner@example.com"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from smtp_server()


@pytest.fixture
def mail_shop(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock, smtp: SmtpServer) -> Iterator[Shop]:
    shop = start_shop(tmp_path, keys, sandbox, clock, SMTP_URL=smtp.url, MAIL_FROM="courses@learning-buddy.test")
    yield shop
    shop.server.stop()


def owned(shop: Shop, course_id: str = "cpp-primer-5th") -> dict[str, Any]:
    """The owner buys the course on their first computer; that license mail is sent and forgotten."""
    view = buy(shop, course_id, email=OWNER)
    run(shop, "mail")
    return view


def audit_actions(action: str) -> list[models.AuditEvent]:
    with models.db.connection_context():
        return list(models.AuditEvent.select().where(models.AuditEvent.action == action))


def queued_to(address: str) -> list[models.MailOutbox]:
    return [m for m in outbox() if m.to.lower() == address.lower() and m.sent_at is None]


def test_the_owner_on_a_new_device_gets_a_201_and_the_license_by_mail_at_once(mail_shop: Shop,
                                                                              smtp: SmtpServer) -> None:
    first = owned(mail_shop)
    smtp.inbox.messages.clear()

    # A new computer: no buyer token, the same address in other capitals.
    again = mail_shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": "Owner@Example.com"})

    assert again.status_code == 201
    check(again, "/orders", "post")
    view = again.json()
    assert view["status"] == "pending" and view["qr_svg"]
    assert "无需再次付款" in view["email_notice"]["zh"]
    assert "no need to pay again" in view["email_notice"]["en"]
    [mail] = queued_to(OWNER)
    assert mail.kind == "owned"
    [event] = audit_actions("license.mailed_on_order")
    with models.db.connection_context():
        assert event.order.public_id == view["order_id"]
    assert run(mail_shop, "mail")["sent"] == 1
    [message] = smtp.inbox.wait_for(1)
    text = plain_text(message)
    assert first["license"]["key"] in text.splitlines()
    assert "无需再次付款" in text and "no need to pay again" in text
    assert any(line.startswith("vscode://") and "/activate?key=" in line for line in text.splitlines())


def test_an_address_that_never_bought_gets_the_same_answer_and_no_mail(mail_shop: Shop) -> None:
    owned(mail_shop)
    owner = mail_shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": OWNER}).json()
    stranger = mail_shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": "new@example.com"}).json()

    # Nothing in the answer tells the two apart: same fields, same words, same status.
    assert set(owner) == set(stranger)
    assert owner["email_notice"] == stranger["email_notice"]
    assert (owner["status"], owner["amount_fen"]) == (stranger["status"], stranger["amount_fen"])
    assert queued_to("new@example.com") == []
    assert len(audit_actions("license.mailed_on_order")) == 1


def test_without_an_email_there_is_no_notice_and_no_mail(mail_shop: Shop) -> None:
    owned(mail_shop)
    placed = mail_shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th"})
    assert placed.status_code == 201 and placed.json()["email_notice"] is None
    check(placed, "/orders", "post")
    assert queued_to(OWNER) == []


def test_only_an_active_license_of_that_course_is_mailed(mail_shop: Shop) -> None:
    first = owned(mail_shop)
    # Another course bought with the address is not this course.
    placed = mail_shop.post("/api/v1/orders", {"course_id": "rust-monthly", "email": OWNER})
    assert placed.status_code == 201 and queued_to(OWNER) == []
    # A revoked license is not mailed as if it still opened the course.
    with models.db.connection_context():
        order = models.Order.get(models.Order.public_id == first["order_id"])
        revoke_license(mail_shop.app.extensions["lbpay.shop"], order, reason="chargeback", actor="test")
    placed = mail_shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": OWNER})
    assert placed.status_code == 201 and queued_to(OWNER) == []
    assert audit_actions("license.mailed_on_order") == []


def test_an_expired_subscription_is_not_mailed_and_an_active_one_says_pay_only_to_extend(mail_shop: Shop) -> None:
    owned(mail_shop, "rust-monthly")
    active = mail_shop.post("/api/v1/orders", {"course_id": "rust-monthly", "email": OWNER}).json()
    assert len(queued_to(OWNER)) == 1
    assert "续期" in active["email_notice"]["zh"] and "extend" in active["email_notice"]["en"]
    run(mail_shop, "mail")

    mail_shop.clock.advance(31 * 86400)
    later = mail_shop.post("/api/v1/orders", {"course_id": "rust-monthly", "email": OWNER})
    assert later.status_code == 201 and queued_to(OWNER) == []


def test_a_subscriber_renewing_on_the_same_device_gets_no_extra_mail(mail_shop: Shop) -> None:
    """Their own buyer token shows they hold the license here already: only a new device is mailed."""
    first = owned(mail_shop, "rust-monthly")
    renewal = mail_shop.post("/api/v1/orders", {"course_id": "rust-monthly", "email": OWNER,
                                                "buyer_token": first["buyer_token"]})
    assert renewal.status_code == 201 and renewal.json()["email_notice"] is not None
    assert queued_to(OWNER) == [] and audit_actions("license.mailed_on_order") == []


def test_orders_cannot_flood_an_owners_mailbox(mail_shop: Shop) -> None:
    """The mails share the address's resend budget: placing orders is no way round it."""
    owned(mail_shop)
    mail_shop.clock.freeze()
    for _ in range(RESEND_PER_ADDRESS.count + 2):
        assert mail_shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": OWNER}).status_code == 201
    assert len(queued_to(OWNER)) == RESEND_PER_ADDRESS.count
    assert len(audit_actions("license.mailed_on_order")) == RESEND_PER_ADDRESS.count
    # Asking for the license by e-mail draws on the same budget: nothing more goes out this hour.
    assert mail_shop.post("/api/v1/licenses/resend", {"email": OWNER}).status_code == 202
    assert len(queued_to(OWNER)) == RESEND_PER_ADDRESS.count


def test_a_replayed_order_mails_nothing_again(mail_shop: Shop) -> None:
    owned(mail_shop)
    headers = {"Idempotency-Key": "same-attempt-0123456789"}
    first = mail_shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": OWNER}, headers=headers)
    replay = mail_shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "email": OWNER}, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert first.json()["order_id"] == replay.json()["order_id"]
    assert replay.json()["email_notice"] == first.json()["email_notice"]
    assert len(queued_to(OWNER)) == 1
