"""Without JavaScript no confirm() runs: the server asks before a refund moves money, and with JavaScript the
browser's own question is the only one."""

from __future__ import annotations

import pytest
from conftest import Shop
from playwright.sync_api import Browser, expect
from matrix import devices
from test_admin import paid_order
from screens import shot
from test_admin_browser import creator  # noqa: F401 (the creator fixture)
from test_console_browser import SIZES, axe_check, open_console, settled

pytestmark = pytest.mark.browser


@devices("desktop", "phone", name="size")
def test_without_javascript_a_refund_asks_on_a_page_of_its_own(browser: Browser, creator: Shop, size: str) -> None:
    order = paid_order(creator)
    context, page, problems = open_console(browser, creator, size, False)
    try:
        page.goto(f"/admin/orders/{order['order_id']}")
        page.fill("#refund-amount", "30.00")
        page.fill("#refund-reason", "只学了一半 half the course")
        page.click("#refund-form button[type=submit]")
        expect(page.locator("#confirm-refund")).to_be_visible()
        expect(page.locator("#confirm-amount")).to_contain_text("¥30.00")
        expect(page.locator("#refund-rows tr")).to_have_count(0)  # nothing moved yet
        settled(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
        shot(page, f"console-refund-confirm-nojs-{size}.png")
        page.click("#confirm-refund-form button[type=submit]")
        expect(page.locator("#refund-rows tr").last).to_have_attribute("data-status", "PROCESSING")
        assert problems == []
    finally:
        context.close()


def test_with_javascript_the_browser_asks_and_the_server_does_not_ask_again(browser: Browser, creator: Shop) -> None:
    order = paid_order(creator)
    context, page, problems = open_console(browser, creator, "desktop", True)
    asked: list[str] = []

    def answer(dialog):  # type: ignore[no-untyped-def]
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    try:
        page.goto(f"/admin/orders/{order['order_id']}")
        page.fill("#refund-amount", "30.00")
        page.fill("#refund-reason", "half")
        page.click("#refund-form button[type=submit]")
        expect(page.locator("#refund-rows tr").last).to_have_attribute("data-status", "PROCESSING")
        assert asked == ["确认通过微信支付退款 ¥30.00？ Refund ¥30.00 through WeChat Pay?"]
        expect(page.locator("#confirm-refund")).to_have_count(0)
        axe_check(page)
        assert problems == []
    finally:
        context.close()
