"""After a refund the order page says how it stands: with JavaScript the news line and the timeline follow
WeChat's answer without a reload; without JavaScript a reload shows the same."""

from __future__ import annotations

import pytest
from conftest import Shop
from playwright.sync_api import Browser, expect
from test_admin import paid_order
from screens import shot
from test_admin_browser import creator, wait_until  # noqa: F401 (the creator fixture)
from test_console_browser import SIZES, axe_check, fits, open_console

pytestmark = pytest.mark.browser


def test_with_javascript_the_news_and_timeline_follow_the_refund_without_a_reload(browser: Browser,
                                                                                    creator: Shop) -> None:
    for size in SIZES:
        order = paid_order(creator)
        context, page, problems = open_console(browser, creator, size, True)
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            page.goto(f"/admin/orders/{order['order_id']}")
            page.fill("#refund-reason", "学员申请退款")
            page.click("#refund-form button[type=submit]")
            news = page.locator("#refund-news .refund-news")
            expect(news).to_have_attribute("data-status", "PROCESSING")
            expect(news).to_contain_text("退款中 Processing")
            number = (page.locator("#refund-rows tr").last.get_attribute("id") or "").removeprefix("refund-")
            assert number and number in (news.text_content() or "")
            expect(page.locator('#timeline li[data-action="refund.requested"]')).to_have_count(1)
            expect(page.locator('#timeline li[data-action="refund.succeeded"]')).to_have_count(0)
            axe_check(page)
            fits(page, size)
            shot(page, f"console-refund-live-processing-{size}.png")
            page.evaluate("window.__sameDocument = true")

            assert creator.sandbox.control("POST", f"refunds/{number}/settle", {"status": "SUCCESS"}).ok
            expect(news).to_have_attribute("data-status", "SUCCESS")
            expect(news).to_contain_text("已退款 Refunded")
            expect(page.locator("#refund-news .live-note")).to_have_count(0)
            expect(page.locator('#timeline li[data-action="refund.succeeded"]')).to_have_count(1)
            expect(page.locator('#timeline li[data-action="license.revoked"]')).to_have_count(1)
            expect(page.locator("#order-status")).to_have_attribute("data-live", "no")  # the poller stopped
            assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
            axe_check(page)
            fits(page, size)
            shot(page, f"console-refund-live-settled-{size}.png")
            assert problems == []
        finally:
            context.close()


def test_without_javascript_a_reload_shows_the_settled_refund_and_its_timeline(browser: Browser,
                                                                                creator: Shop) -> None:
    for size in SIZES:
        order = paid_order(creator)
        context, page, problems = open_console(browser, creator, size, False)
        try:
            page.goto(f"/admin/orders/{order['order_id']}")
            page.fill("#refund-reason", "no script")
            page.click("#refund-form button[type=submit]")
            page.click("#confirm-refund-form button[type=submit]")
            news = page.locator("#refund-news .refund-news")
            expect(news).to_have_attribute("data-status", "PROCESSING")
            number = (page.locator("#refund-rows tr").last.get_attribute("id") or "").removeprefix("refund-")
            path = page.url.removeprefix(creator.url)
            assert path.endswith(f"?refund={number}")
            assert creator.sandbox.control("POST", f"refunds/{number}/settle", {"status": "SUCCESS"}).ok
            wait_until(page, path, "#refund-news .refund-news", "SUCCESS")
            expect(news).to_contain_text("已退款 Refunded")
            expect(page.locator('#timeline li[data-action="refund.succeeded"]')).to_have_count(1)
            assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size]["width"]
            assert problems == []
        finally:
            context.close()
