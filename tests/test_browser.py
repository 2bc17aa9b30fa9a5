"""A learner buys a course in headless Chromium, against the server exactly as `make run` serves it.

The server is the real thing: `lbpay init`, `lbpay courses add`, then gunicorn with the embedded
WeChat Pay sandbox, on a free loopback port with its own instance folder. The browser is Debian's
Chromium (`make system-deps`); Playwright never downloads one of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect
from servers import RunningServer, sandbox_mode_server

from billing import CATALOGUE
from licensing import load_public_key_pem, verify_license

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
# Screenshots go to docs/ only when asked (LBPAY_SCREENSHOTS=docs/screenshots), so a test run
# leaves the work tree clean; otherwise they land in a temporary folder and are still taken.
SCREENSHOTS = Path(os.environ.get("LBPAY_SCREENSHOTS") or tempfile.mkdtemp(prefix="lbpay-shots-"))
VIEWPORT = {"width": 420, "height": 900}
COURSE_ID = "cpp-primer-5th"
COURSE_TITLE = "C++ Primer 第5版"
UTC = dt.timezone.utc

# Records CSP violations in the page itself; Playwright injects init scripts past the page's CSP.
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


# --- the server, as `make run` starts it ----------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    commands = [("courses", "add", COURSE_ID, "--title", COURSE_TITLE, "--price-fen", "9900")]
    try:
        with sandbox_mode_server(tmp_path_factory.mktemp("lbpay-browser"), commands) as started:
            yield started
    except RuntimeError as exc:
        pytest.fail(str(exc))


# --- the browser ----------------------------------------------------------------------------


@dataclass
class Problems:
    """What went wrong in the browser: console errors, uncaught exceptions, CSP violations."""

    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def watch(self, page: Page, *, expected_404: str | None = None) -> Page:
        """Collect the page's problems; ``expected_404`` is a URL whose 404 is the point of the test."""

        def on_console(message: ConsoleMessage) -> None:
            if message.type != "error":
                return
            source = message.location.get("url")
            if source == expected_404 and "status of 404" in message.text:
                return
            self.console.append(f"{page.url}: {message.text} ({source})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(f"{page.url}: {exc}"))
        return page

    def assert_none(self, *pages: Page) -> None:
        csp = [f"{p.url}: {v}" for p in pages if not p.is_closed()
               for v in p.evaluate("window.__cspViolations || []")]
        assert (self.console, self.page_errors, csp) == ([], [], [])


@dataclass
class Learner:
    context: BrowserContext
    page: Page
    problems: Problems
    base: str

    def new_phone_page(self) -> Page:
        # The sandbox's own pages (wechatpay/sandbox) link no icon, so Chromium asks for /favicon.ico,
        # which our app does not serve: that 404 belongs to the simulator, not the purchase page.
        return self.problems.watch(self.context.new_page(), expected_404=self.base + "/favicon.ico")

    def open_course(self, course_id: str = COURSE_ID) -> Any:
        return self.page.goto(f"{self.base}/buy/{course_id}")

    def place_order(self, email: str = "learner@example.com") -> dict[str, Any]:
        """Fill the form and click pay; return the order the page was given (with its token)."""
        self.page.fill("#email", email)
        with self.page.expect_response(lambda r: r.url.endswith("/api/v1/orders")
                                       and r.request.method == "POST") as placed:
            self.page.click("#pay")
        assert placed.value.status == 201, placed.value.text()
        order: dict[str, Any] = placed.value.json()
        expect(self.page.locator("#qr svg")).to_be_visible()
        expect(self.page.locator("#order-id")).to_have_text(order["order_id"])
        return order

    def open_phone(self) -> Page:
        """Open the sandbox's simulated phone for the QR shown, in a new page as a scan would."""
        href = self.page.get_attribute("#sandbox-pay", "href")
        assert href and re.fullmatch(r"/sandbox/pay/[^/]+", href), href
        phone = self.new_phone_page()
        response = phone.goto(self.base + href)
        assert response is not None and response.status == 200
        return phone

    def order_status(self, order: dict[str, Any]) -> dict[str, Any]:
        r = requests.get(f"{self.base}/api/v1/orders/{order['order_id']}",
                         headers={"Authorization": "Bearer " + order["order_token"]}, timeout=5)
        assert r.ok, r.text
        view: dict[str, Any] = r.json()
        return view


@pytest.fixture
def learner(browser: Browser, server: RunningServer) -> Iterator[Learner]:
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(10_000)
    context.add_init_script(CSP_PROBE)
    problems = Problems()
    start = server.mark()
    try:
        yield Learner(context, problems.watch(context.new_page()), problems, server.base)
    finally:
        context.close()
        # pytest shows a test's captured output only when it fails: the server's side of the story.
        print(f"--- server output during this test ({server.log}) ---\n{server.output(start)}")


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


# --- the tests ------------------------------------------------------------------------------

def test_learner_pays_and_gets_a_valid_license(learner: Learner) -> None:
    page = learner.page
    response = learner.open_course()
    assert response is not None and response.status == 200
    expect(page.locator("h1")).to_have_text(COURSE_TITLE)
    expect(page.locator("#price")).to_contain_text("¥99.00")
    expect(page.locator("#pay")).to_contain_text("微信支付")

    order = learner.place_order()
    expect(page.locator("#status")).to_contain_text("等待支付")
    shot(page, "buy-qr.png")

    phone = learner.open_phone()
    expect(phone.locator(".amount")).to_have_text("¥99.00")
    shot(phone, "sandbox-phone.png")
    phone.get_by_role("button", name=re.compile("支付 Pay")).click()
    expect(phone.locator("[data-outcome]")).to_have_attribute("data-outcome", "paid")
    expect(phone.locator(".outcome")).to_contain_text("支付成功")

    page.bring_to_front()
    expect(page.locator("#license")).not_to_have_value("", timeout=15_000)
    expect(page.locator("#license-box")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("支付成功")
    expect(page.locator("#license-expiry")).not_to_be_empty()
    expect(page.locator("#qr-box")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    shot(page, "buy-license.png")

    text = page.input_value("#license")
    published = requests.get(learner.base + "/api/v1/license-keys", timeout=5).json()["keys"]
    keys = {k["kid"]: load_public_key_pem(k["public_key_pem"].encode()) for k in published}
    check = verify_license(text, keys, dt.datetime.now(UTC), expected_course=COURSE_ID)
    assert check.status == "valid", check
    assert check.payload is not None and check.payload["courseId"] == COURSE_ID
    assert check.payload["orderId"] == order["order_id"]
    assert learner.order_status(order)["status"] == "fulfilled"
    learner.problems.assert_none(page, phone)


def test_insufficient_balance_keeps_the_purchase_page_waiting(learner: Learner) -> None:
    page = learner.page
    learner.open_course()
    order = learner.place_order()

    phone = learner.open_phone()
    phone.get_by_role("button", name=re.compile("余额不足")).click()
    expect(phone.locator("[data-outcome]")).to_have_attribute("data-outcome", "insufficient")
    expect(phone.locator(".outcome")).to_contain_text("零钱余额不足，支付失败")
    expect(phone.locator(".outcome")).to_contain_text("Insufficient balance")
    # The learner may still pay with another card: the phone offers the buttons again.
    expect(phone.get_by_role("button", name=re.compile("支付 Pay"))).to_be_visible()

    page.bring_to_front()
    for _ in range(2):  # two polls after the failed attempt
        with page.expect_response(lambda r: f"/api/v1/orders/{order['order_id']}" in r.url) as polled:
            pass
        assert polled.value.ok
        assert polled.value.json()["status"] == "pending"
    expect(page.locator("#status")).to_contain_text("等待支付")
    expect(page.locator("#qr svg")).to_be_visible()
    expect(page.locator("#license-box")).to_be_hidden()
    expect(page.locator("#license")).to_have_value("")
    expect(page.locator("#error")).to_be_hidden()
    assert learner.order_status(order)["status"] == "pending"
    learner.problems.assert_none(page, phone)


def test_cancelling_shows_the_closed_order_in_both_languages(learner: Learner) -> None:
    page = learner.page
    learner.open_course()
    order = learner.place_order()

    page.click("#cancel")
    closed = CATALOGUE["payment_cancelled"]
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_have_attribute("data-code", "payment_cancelled")
    expect(page.locator("#error-zh")).to_have_text(closed.message_zh)
    expect(page.locator("#error-en")).to_have_text(closed.message_en)
    expect(page.locator("#error-action")).to_contain_text(order["order_id"])
    expect(page.locator("#status")).to_contain_text("订单已关闭")
    expect(page.locator("#qr-box")).to_be_hidden()
    expect(page.locator("#license-box")).to_be_hidden()
    assert learner.order_status(order)["status"] == "closed"
    shot(page, "buy-closed.png")

    # The phone no longer offers to pay the closed order.
    phone = learner.new_phone_page()
    phone.goto(learner.base + page.get_attribute("#sandbox-pay", "href"))
    expect(phone.get_by_role("button", name=re.compile("支付 Pay"))).to_have_count(0)
    expect(phone.locator(".outcome-refused")).to_contain_text("不可支付")

    # The error says to place a new order, and the page offers the button to do it.
    page.bring_to_front()
    expect(page.locator("#pay")).to_be_visible()
    again = learner.place_order()
    assert again["order_id"] != order["order_id"]
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("等待支付")
    learner.problems.assert_none(page, phone)


def test_unknown_course_is_a_bilingual_404(learner: Learner) -> None:
    url = learner.base + "/buy/no-such-course"
    page = learner.problems.watch(learner.context.new_page(), expected_404=url)
    response = page.goto(url)
    assert response is not None and response.status == 404
    text = CATALOGUE["course_not_found"]
    expect(page.locator("h1")).to_have_text("404")
    expect(page.locator("main")).to_contain_text(text.message_zh)
    expect(page.locator("main .en")).to_have_text(text.message_en)
    expect(page.locator("#pay")).to_have_count(0)
    learner.problems.assert_none(page)


def test_purchase_page_has_no_console_errors_or_csp_violations(learner: Learner) -> None:
    page = learner.page
    learner.open_course()
    page.wait_for_load_state("load")
    order = learner.place_order()
    with page.expect_response(lambda r: f"/api/v1/orders/{order['order_id']}" in r.url):
        pass  # at least one poll has run
    # The stylesheet applied (a CSP block would leave the button unstyled) and the script ran.
    expect(page.locator("#qr-box")).to_be_visible()
    assert page.eval_on_selector("#cancel", "e => getComputedStyle(e).borderRadius") == "8px"
    learner.problems.assert_none(page)
