"""The receipt page and its fapiao form, and the console's Fapiao page, in Chromium on a phone and a desktop:
nothing scrolls sideways, axe-core finds nothing serious, and the form names each mistake by its field."""

from __future__ import annotations

import pytest
from conftest import Shop
from playwright.sync_api import Browser, expect
from matrix import devices
from test_admin import paid_order, shop_of
from screens import shot
from test_admin_browser import CSP_PROBE, creator  # noqa: F401 (the creator fixture)
from test_console_browser import SIZES, axe_check, fits, open_console, settled

import models
from billing.receipts import receipt_token

pytestmark = pytest.mark.browser


@devices("phone", "desktop", name="size")
def test_a_learner_asks_for_a_fapiao_and_the_creator_sees_it(browser: Browser, creator: Shop, size: str) -> None:
    order = paid_order(creator, email="fapiao@example.com")
    with models.db.connection_context():
        row = models.Order.get(models.Order.public_id == order["order_id"])
        token = receipt_token(shop_of(creator), row)
    context = browser.new_context(viewport=SIZES[size], locale="zh-CN", timezone_id="Asia/Shanghai",
                                  base_url=creator.url, is_mobile=size == "phone", has_touch=size == "phone")
    context.set_default_timeout(10_000)
    context.add_init_script(CSP_PROBE)
    context._lbpay_javascript = True  # type: ignore[attr-defined]
    page = context.new_page()
    try:
        page.goto(f"/receipt/{order['order_id']}?t={token}")
        expect(page.locator("#receipt-amount")).to_contain_text("¥99.00")
        expect(page.locator("#receipt-transaction")).to_have_text(row.transaction_id)
        fits(page, size)
        axe_check(page)
        page.fill("#fapiao-title", "某某科技有限公司")
        page.fill("#fapiao-email", "finance")
        page.click("#fapiao-form button[type=submit]")
        expect(page.locator("#fapiao-tax_id-problem")).to_contain_text("纳税人识别号")
        expect(page.locator("#fapiao-email-problem")).to_be_visible()
        expect(page.locator("#fapiao-title")).to_have_value("某某科技有限公司")
        fits(page, size)
        axe_check(page)
        shot(page, f"receipt-fapiao-mistakes-{size}.png")
        page.fill("#fapiao-tax_id", "91110108MA01ABCD2X")
        page.fill("#fapiao-email", "finance@example.com")
        page.click("#fapiao-form button[type=submit]")
        expect(page.locator("#fapiao-asked")).to_be_visible()
        expect(page.locator(".fapiao-request")).to_have_attribute("data-state", "waiting")
        settled(page)
        shot(page, f"receipt-fapiao-asked-{size}.png")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()

    context, page, problems = open_console(browser, creator, size, True)
    try:
        expect(page.locator("#fapiao-badge")).to_have_text("1")
        page.click("#nav-fapiao")
        expect(page.locator("tr.fapiao-request")).to_contain_text("91110108MA01ABCD2X")
        fits(page, size)
        axe_check(page)
        shot(page, f"console-fapiao-{size}.png")
        page.fill("tr.fapiao-request input[name=note]", "已开具 issued")
        page.click("tr.fapiao-request button[type=submit]")
        expect(page.locator("#no-fapiao")).to_be_visible()
        expect(page.locator("tr.fapiao-issued")).to_contain_text("某某科技有限公司")
        expect(page.locator("#fapiao-badge")).to_have_count(0)
        assert problems == []
    finally:
        context.close()
