"""Issue 24 / THREATS #65: the way back in for a creator locked out by guesses from many addresses.

Past SIGN_IN_UNKNOWN_DEVICES failures the console refuses every browser it never saw. A one-time
link mailed to the admin (real SMTP on loopback) makes the browser that asked for it a known
device, which signs in against its own limit; the link signs nobody in, works once, for 15
minutes, in that browser only, and every refusal is a 4xx with a reason and an audit event.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import FakeClock, Keys, Sandbox, Shop, start_shop
from learner_helpers import SmtpServer, outbox, plain_text, run, smtp_server
from matrix import devices
from test_admin import EMAIL, Console, _from
from test_console_browser import settled

import models
from billing import admin_users
from billing.limits import SIGN_IN_LINKS_PER_ACCOUNT, SIGN_IN_UNKNOWN_DEVICES

CREATOR_AT = "198.51.100.20"
LINK = re.compile(r"/admin/login/link/([A-Za-z0-9_-]+)")
SCREENS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from smtp_server()


@pytest.fixture
def locked_out(tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock, smtp: SmtpServer) -> Iterator[Shop]:
    """The live shop behind one proxy hop, its creator's account closed to unknown browsers."""
    clock.freeze()  # no refill while the test runs, however busy the machine
    shop = start_shop(tmp_path, keys, sandbox, clock, PROXY_HOPS=1, SMTP_URL=smtp.url,
                      MAIL_FROM="Learning Buddy <courses@learning-buddy.test>")
    # Plain HTTP on loopback: a Secure (or __Host-) cookie would never come back from a browser.
    shop.app.config.update(SESSION_COOKIE_SECURE=False, SESSION_COOKIE_NAME="lbpay_session")
    with models.db.connection_context():
        lbpay = shop.app.extensions["lbpay.shop"]
        admin_users.create_admin(lbpay, EMAIL, "correct horse battery staple")
        # What each wrong guess costs (the hashing aside), spread over ten addresses, five each.
        for n in range(SIGN_IN_UNKNOWN_DEVICES.count):
            admin_users.take_attempt(lbpay, EMAIL, f"203.0.113.{n // 5}")
    yield shop
    shop.server.stop()


def browser(shop: Shop, address: str = CREATOR_AT) -> Console:
    return _from(Console(shop), address)


def ask_for_link(console: Console, email: str = EMAIL) -> Any:
    return console.post("/admin/login/link", {"email": email})


def mailed_token(smtp: SmtpServer, shop: Shop, count: int = 1) -> str:
    assert run(shop, "mail")["sent"] >= 1
    messages = smtp.inbox.wait_for(count)
    assert len(messages) == count and messages[-1]["To"] == EMAIL
    match = LINK.search(plain_text(messages[-1]))
    assert match, plain_text(messages[-1])
    return match.group(1)


def use(console: Console, token: str) -> Any:
    return console.post(f"/admin/login/link/{token}")


def refusals() -> list[str]:
    """The reason of each refused link, oldest first."""
    with models.db.connection_context():
        return [json.loads(e.detail)["reason"] for e in models.AuditEvent.select().where(models.AuditEvent.action == "admin.link_refused")
                .order_by(models.AuditEvent.id)]


def test_a_mailed_link_lets_the_creators_new_browser_in_while_unknown_browsers_stay_locked_out(
        locked_out: Shop, smtp: SmtpServer) -> None:
    shop = locked_out
    creator = browser(shop)
    refused = creator.login()
    assert refused.status_code == 429 and "/admin/login/link" in refused.text

    asked = ask_for_link(creator)
    assert asked.status_code == 200 and "15" in asked.text
    token = mailed_token(smtp, shop)
    assert creator.get(f"/admin/login/link/{token}").status_code == 200  # a mail scanner's GET spends nothing
    trusted = use(creator, token)

    assert trusted.status_code == 303 and trusted.headers["Location"].endswith("/admin/login")
    assert "lbpay_device" in trusted.headers.get("Set-Cookie", "")
    assert creator.login().status_code == 303, "a known browser signs in against its own limit"
    assert creator.signed_in()
    # Anyone else, even with the right password and from the creator's address, is still throttled.
    assert browser(shop).login().status_code == 429
    with models.db.connection_context():
        actions = [e.action for e in models.AuditEvent.select().order_by(models.AuditEvent.id)]
        [link] = list(models.AdminSignInLink.select())
    assert {"admin.link_requested", "admin.browser_trusted", "admin.signed_in"} <= set(actions)
    assert token not in (link.token_hash, link.browser_hash), "only hashes are kept"


def test_the_link_does_not_sign_in_by_itself(locked_out: Shop, smtp: SmtpServer) -> None:
    creator = browser(locked_out)
    ask_for_link(creator)
    assert use(creator, mailed_token(smtp, locked_out)).status_code == 303
    assert not creator.signed_in()
    assert creator.login(password="a wrong password").status_code == 401


def test_a_used_link_is_refused_the_second_time(locked_out: Shop, smtp: SmtpServer) -> None:
    creator = browser(locked_out)
    ask_for_link(creator)
    token = mailed_token(smtp, locked_out)
    assert use(creator, token).status_code == 303

    again = use(creator, token)

    assert again.status_code == 410 and 'data-reason="used"' in again.text
    assert "lbpay_device" not in again.headers.get("Set-Cookie", "")
    assert refusals()[-1] == "used"


def test_an_expired_link_is_refused(locked_out: Shop, smtp: SmtpServer) -> None:
    creator = browser(locked_out)
    ask_for_link(creator)
    token = mailed_token(smtp, locked_out)

    locked_out.clock.advance(15 * 60)
    late = use(creator, token)

    assert late.status_code == 410 and 'data-reason="expired"' in late.text
    assert "lbpay_device" not in late.headers.get("Set-Cookie", "")
    assert refusals()[-1] == "expired"


def test_a_link_opened_in_another_browser_is_refused_and_still_works_in_the_one_that_asked(
        locked_out: Shop, smtp: SmtpServer) -> None:
    asker = browser(locked_out)
    ask_for_link(asker)
    token = mailed_token(smtp, locked_out)
    elsewhere = browser(locked_out, "192.0.2.44")  # the phone's mail app, or whoever got hold of the link
    ask_for_link(elsewhere, "someone-else@example.com")  # a link cookie of its own is not this link's

    wrong = use(elsewhere, token)

    assert wrong.status_code == 403 and 'data-reason="wrong_browser"' in wrong.text
    assert "lbpay_device" not in wrong.headers.get("Set-Cookie", "")
    assert refusals()[-1] == "wrong_browser"
    assert elsewhere.login().status_code == 429
    assert use(asker, token).status_code == 303
    assert asker.login().status_code == 303


def test_an_unknown_link_is_refused_with_an_audit_event(locked_out: Shop) -> None:
    creator = browser(locked_out)
    answer = use(creator, "x" * 43)
    assert answer.status_code == 404 and 'data-reason="unknown"' in answer.text
    assert refusals()[-1] == "unknown"


def test_an_address_that_is_no_admins_is_answered_alike_and_mailed_nothing(locked_out: Shop) -> None:
    stranger = browser(locked_out, "192.0.2.7")
    for_admin = ask_for_link(browser(locked_out, "192.0.2.8"))
    for_nobody = ask_for_link(stranger, "nobody@example.com")
    assert for_nobody.status_code == for_admin.status_code == 200
    assert "a mail with a link is on its way" in for_nobody.text and "a mail with a link is on its way" in for_admin.text
    assert [m.to for m in outbox()] == [EMAIL]


def test_link_mails_to_one_admin_are_limited(locked_out: Shop) -> None:
    statuses = [ask_for_link(browser(locked_out, f"192.0.2.{n}")).status_code
                for n in range(SIGN_IN_LINKS_PER_ACCOUNT.count + 1)]
    assert statuses == [200] * SIGN_IN_LINKS_PER_ACCOUNT.count + [429]
    assert len(outbox()) == SIGN_IN_LINKS_PER_ACCOUNT.count


@pytest.mark.browser
@devices("phone", "desktop", name="screen")
def test_the_link_pages_fit_a_phone_and_a_desktop(locked_out: Shop, smtp: SmtpServer, browser: Any, screen: str) -> None:
    size = SCREENS[screen]
    from screens import shot

    context = browser.new_context(viewport=size, locale="zh-CN", base_url=locked_out.url,
                                  extra_http_headers={"X-Forwarded-For": CREATOR_AT})
    try:
        page = context.new_page()
        page.goto("/admin/login")
        page.click("a[href='/admin/login/link']")
        page.fill("#email", EMAIL)
        shot(page, f"admin-login-link-{size['width']}.png")
        page.click("button[type=submit]")
        page.wait_for_selector("text=a mail with a link is on its way")
        settled(page)  # measured once its stylesheet applies
        pages = [("sent", page.evaluate("document.documentElement.scrollWidth"))]
        page.goto(f"/admin/login/link/{mailed_token(smtp, locked_out)}")
        shot(page, f"admin-login-link-confirm-{size['width']}.png")
        page.click("button[type=submit]")
        page.wait_for_selector("text=This browser is now known")
        settled(page)  # measured once its stylesheet applies
        pages.append(("known", page.evaluate("document.documentElement.scrollWidth")))
        page.goto("/admin/login/link/" + "x" * 43)
        page.click("button[type=submit]")
        page.wait_for_selector("[data-reason=unknown]")
        shot(page, f"admin-login-link-refused-{size['width']}.png")
        settled(page)  # measured once its stylesheet applies
        pages.append(("refused", page.evaluate("document.documentElement.scrollWidth")))
        assert all(width <= size["width"] for _, width in pages), pages
    finally:
        context.close()
