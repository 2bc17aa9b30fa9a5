"""A discount code on the purchase page (issue 22, item 1), with and without JavaScript, in Chromium:
the amount WeChat receives is the discounted one, the page shows list price, discount and paid, and
a refused code is said in Chinese and English beside the field (expired, used up, another course)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, expect
from matrix import devices
from servers import DEMO_COURSES, RunningServer, sandbox_mode_server
from screens import shot
from test_browser import COURSE_ID, new_context, published_keys

from billing import CATALOGUE
from licensing import verify_license

pytestmark = pytest.mark.browser

CODES = (
    ("codes", "add", "STUDY20", "--percent", "20", "--course", COURSE_ID),
    ("codes", "add", "LASTYEAR", "--percent", "10", "--ends", "2020-01-01T00:00"),
    ("codes", "add", "ONEONLY", "--percent", "10", "--max-uses", "1"),
    ("codes", "add", "RUSTONLY", "--percent", "10", "--course", "rust-monthly"),
    ("codes", "add", "GIFT100", "--percent", "100", "--course", COURSE_ID),
    ("codes", "add", "--launch-price-fen", "1900", "--course", "rust-monthly", "--ends", "2030-01-01T00:00"),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    try:
        with sandbox_mode_server(tmp_path_factory.mktemp("lbpay-buy-codes"), DEMO_COURSES + CODES) as started:
            # The one use of ONEONLY is held by a pending order: the next buyer finds it used up.
            taken = requests.post(started.base + "/api/v1/orders", json={"course_id": COURSE_ID, "code": "oneonly"},
                                  timeout=30)
            assert taken.status_code == 201, taken.text
            yield started
    except RuntimeError as exc:
        pytest.fail(str(exc))


def wechat_total(base: str, out_trade_no: str) -> int:
    """What the simulated phone is asked to pay for this order."""
    answer = requests.get(f"{base}/sandbox/control/orders/{out_trade_no}", timeout=10)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def refused(page: Page, code: str) -> None:
    words = CATALOGUE[code]
    expect(page.locator("#error")).to_have_attribute("data-code", code)
    expect(page.locator("#error")).to_contain_text(words.message_zh)
    expect(page.locator("#error")).to_contain_text(words.message_en)
    expect(page.locator("#code-problem")).to_be_visible()
    expect(page.locator("#code-problem")).to_contain_text(words.message_en)
    expect(page.locator("#code")).to_have_attribute("aria-invalid", "true")


@devices("phone", "desktop")
def test_a_code_on_the_page_lowers_what_wechat_asks_and_refusals_read_in_both_languages(
        browser: Browser, server: RunningServer, device: str) -> None:
    context = new_context(browser, device)
    try:
        page = context.new_page()
        page.goto(f"{server.base}/buy/{COURSE_ID}")
        for code, expected in (("lastyear", "code_expired"), ("ONEONLY", "code_exhausted"),
                               ("RustOnly", "code_wrong_course"), ("NOSUCHCODE", "code_not_found")):
            page.fill("#code", code)
            with page.expect_response(lambda r: r.url.endswith("/api/v1/orders")) as answer:
                page.click("#pay")
            assert answer.value.status == CATALOGUE[expected].status
            refused(page, expected)
            expect(page.locator("#qr-box")).to_be_hidden()
            if expected == "code_wrong_course":
                shot(page, f"buy-code-refused-{device}.png")

        page.fill("#code", " study20 ")
        with page.expect_response(lambda r: r.url.endswith("/api/v1/orders")) as answer:
            page.click("#pay")
        assert answer.value.status == 201, answer.value.text()
        order = answer.value.json()
        expect(page.locator("#qr")).to_be_visible()
        expect(page.locator("#code-problem")).to_be_hidden()
        expect(page.locator("#amount")).to_have_text("¥79.20")
        expect(page.locator("#breakdown")).to_have_text("原价 List ¥99.00 · 优惠 Discount −¥19.80 · 实付 Paid ¥79.20")
        assert wechat_total(server.base, order["out_trade_no"]) == 7920
        shot(page, f"buy-code-qr-{device}.png")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()


def test_a_full_discount_code_gives_the_license_at_once_without_a_qr(browser: Browser, server: RunningServer) -> None:
    context = new_context(browser, "desktop")
    try:
        page = context.new_page()
        page.goto(f"{server.base}/buy/{COURSE_ID}")
        page.fill("#code", "GIFT100")
        page.click("#pay")
        expect(page.locator("#license-box")).to_be_visible()
        key = page.input_value("#license")  # the license itself, never a QR first
        assert verify_license(key, published_keys(server.base), dt.datetime.now(dt.timezone.utc),
                              expected_course=COURSE_ID).status == "valid"
        expect(page.locator("#qr-box")).to_be_hidden()
        expect(page.locator("#breakdown")).to_contain_text("实付 Paid ¥0.00")
    finally:
        context.close()


@devices("desktop", "phone")
def test_without_javascript_a_code_is_applied_or_refused_with_the_form_kept(browser: Browser, server: RunningServer,
                                                                          device: str) -> None:
    context = new_context(browser, device, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{server.base}/buy/{COURSE_ID}")
        page.fill("#email", f"codes-{device}@example.com")
        page.fill("#code", "rustonly")
        page.click("#pay")
        refused(page, "code_wrong_course")
        expect(page.locator("#code")).to_have_value("rustonly")  # what was typed stays, to correct it
        expect(page.locator("#email")).to_have_value(f"codes-{device}@example.com")
        shot(page, f"nojs-code-refused-{device}.png")
        page.fill("#code", "LASTYEAR")
        page.click("#pay")
        refused(page, "code_expired")

        page.fill("#code", "study20")
        page.click("#pay")
        expect(page).to_have_url(re.compile(rf"/buy/{COURSE_ID}/orders/ord_"))
        expect(page.locator("#amount")).to_have_text("¥79.20")
        expect(page.locator("#breakdown")).to_contain_text("¥99.00")
        expect(page.locator("#breakdown")).to_contain_text("−¥19.80")
        shot(page, f"nojs-code-qr-{device}.png")
    finally:
        context.close()


def test_a_launch_price_shows_the_list_price_struck_on_the_page(server: RunningServer) -> None:
    page = requests.get(f"{server.base}/buy/rust-monthly", timeout=10).text
    assert re.search(r'<del class="list-price" id="list-price">¥29.00</del> ¥19.00 <span class="plan launch">首发价', page)
    assert "<del" not in requests.get(f"{server.base}/buy/{COURSE_ID}", timeout=10).text
