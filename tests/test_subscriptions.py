"""Subscriptions: paying again renews the same license id, and a reminder goes out before the end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import pytest
from conftest import FakeClock, Keys, Sandbox, Shop
from learner_helpers import SmtpServer, buy, html_text, outbox, plain_text, run, smtp_server, start_shop

from licensing import verify_license
from wechatpay.crypto import load_public_key

UTC = dt.timezone.utc
PERIOD = dt.timedelta(days=30)


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def verify(shop: Shop, key: str, at: dt.datetime) -> dict:
    keys = {k["kid"]: load_public_key(k["public_key_pem"].encode())
            for k in shop.get("/api/v1/license-keys").json()["keys"]}
    check = verify_license(key, keys, at, expected_course="rust-monthly")
    assert check.status == "valid", check
    assert check.payload is not None
    return check.payload


def test_buying_a_subscription_twice_keeps_one_license_id_and_adds_one_period(shop: Shop) -> None:
    first = buy(shop, "rust-monthly")
    first_expiry = parse(first["license"]["expires_at"])
    assert abs(first_expiry - (shop.clock() + PERIOD)) < dt.timedelta(seconds=10)

    shop.clock.advance(10 * 86400)  # renew early: the new period starts at the old expiry
    second = buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    assert second["license"]["id"] == first["license"]["id"]
    assert parse(second["license"]["expires_at"]) == first_expiry + PERIOD

    payload = verify(shop, second["license"]["key"], shop.clock())
    assert payload["id"] == first["license"]["id"] and payload["orderId"] == second["order_id"]
    assert payload["plan"] == "subscription"

    [lic] = shop.get("/api/v1/me/licenses", token=first["buyer_token"]).json()["licenses"]
    assert (lic["id"], lic["order_id"], lic["expires_at"], lic["key"]) == (
        first["license"]["id"], second["order_id"], second["license"]["expires_at"], second["license"]["key"])
    status = shop.get(f"/api/v1/licenses/{lic['id']}/status").json()
    assert status == {"id": lic["id"], "state": "active", "expires_at": second["license"]["expires_at"]}
    # Both orders show the one license; the first order's key is superseded, not expired.
    orders = shop.get("/api/v1/me/orders", token=first["buyer_token"]).json()["orders"]
    assert {o["license"]["id"] for o in orders} == {first["license"]["id"]}
    assert {o["license"]["state"] for o in orders} == {"active"}


def test_renewing_after_the_end_starts_from_now(shop: Shop) -> None:
    first = buy(shop, "rust-monthly")
    shop.clock.advance(45 * 86400)
    assert shop.get(f"/api/v1/licenses/{first['license']['id']}/status").json()["state"] == "expired"
    second = buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    assert second["license"]["id"] == first["license"]["id"]
    assert abs(parse(second["license"]["expires_at"]) - (shop.clock() + PERIOD)) < dt.timedelta(seconds=10)
    assert shop.get(f"/api/v1/licenses/{first['license']['id']}/status").json()["state"] == "active"


def test_another_buyer_gets_their_own_license_id(shop: Shop) -> None:
    a, b = buy(shop, "rust-monthly"), buy(shop, "rust-monthly")
    assert a["license"]["id"] != b["license"]["id"]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from smtp_server()


@pytest.fixture
def mail_shop(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock, smtp: SmtpServer) -> Iterator[Shop]:
    shop = start_shop(tmp_path, keys, sandbox, clock, SMTP_URL=smtp.url, MAIL_FROM="courses@learning-buddy.test",
                      RENEWAL_REMINDER_DAYS="5")
    yield shop
    shop.server.stop()


def test_a_reminder_goes_out_once_before_the_subscription_ends(mail_shop: Shop, smtp: SmtpServer) -> None:
    bought = buy(mail_shop, "rust-monthly", email="learner@example.com")
    run(mail_shop, "mail")  # the license mail
    assert run(mail_shop, "renewal_reminders") == {"reminders": 0}

    mail_shop.clock.advance(24 * 86400)  # six days left, the window is five
    assert run(mail_shop, "renewal_reminders") == {"reminders": 0}
    mail_shop.clock.advance(2 * 86400)  # four days left
    assert run(mail_shop, "renewal_reminders") == {"reminders": 1}
    assert run(mail_shop, "renewal_reminders") == {"reminders": 0}  # once per expiry
    assert run(mail_shop, "mail")["sent"] == 1
    messages = smtp.inbox.wait_for(2)
    reminder = messages[-1]
    assert reminder["To"] == "learner@example.com" and "Rust 每月一课" in reminder["Subject"]
    text = plain_text(reminder)
    assert "https://shop.test/buy/rust-monthly" in text.splitlines()
    assert bought["license"]["id"] in text and "no automatic debit" in text
    assert 'href="https://shop.test/buy/rust-monthly"' in html_text(reminder)

    # Renewing moves the expiry past the window; the next period gets its own reminder.
    renewed = buy(mail_shop, "rust-monthly", buyer_token=bought["buyer_token"], email="learner@example.com")
    assert renewed["license"]["id"] == bought["license"]["id"]
    assert run(mail_shop, "renewal_reminders") == {"reminders": 0}
    mail_shop.clock.advance(31 * 86400)  # day 57 of 60: three days left
    assert run(mail_shop, "renewal_reminders") == {"reminders": 1}
    kinds = [m.kind for m in outbox()]
    assert kinds == ["license", "renewal_reminder", "license", "renewal_reminder"]


def test_no_reminder_for_a_lifetime_course_or_without_an_address(mail_shop: Shop) -> None:
    buy(mail_shop, email="learner@example.com")
    buy(mail_shop, "rust-monthly")
    mail_shop.clock.advance(27 * 86400)
    assert run(mail_shop, "renewal_reminders") == {"reminders": 0}
