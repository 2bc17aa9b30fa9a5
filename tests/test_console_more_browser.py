"""The bills page, the course editor and the revenue tiles in Chromium: phone and desktop, with and without
JavaScript, axe-core on every page, nothing wider than the screen."""

from __future__ import annotations

import pytest
from conftest import Shop
from playwright.sync_api import Browser, expect
from matrix import sizes_and_scripts
from test_admin import paid_order
from screens import shot
from test_admin_browser import creator  # noqa: F401 (the creator fixture)
from test_console_browser import axe_check, fits, open_console

pytestmark = pytest.mark.browser


@sizes_and_scripts(("desktop", True), ("phone", False))
def test_a_creator_checks_a_bill_and_edits_a_course(browser: Browser, creator: Shop, size: str,
                                                    javascript: bool) -> None:
    paid_order(creator)
    context, page, problems = open_console(browser, creator, size, javascript)
    suffix = f"{size}{'' if javascript else '-nojs'}"
    try:
        expect(page.locator(".sales-tile[data-period='today'] .net")).to_have_text("¥99.00")
        expect(page.locator(".sales-tile[data-period='today'] .gross")).to_contain_text("¥99.00")
        fits(page, size)
        axe_check(page)
        if javascript:
            shot(page, f"console-dashboard-tiles-{suffix}.png")

        page.click("text=对账 Bills")
        expect(page.locator("#check-form")).to_be_visible()
        page.click("#check-form button[type=submit]")
        expect(page.locator(".flash")).to_be_visible()
        fits(page, size)
        axe_check(page)
        if javascript:
            shot(page, f"console-bills-{suffix}.png")

        page.click("text=课程 Courses")
        expect(page.locator("#course-rows")).to_contain_text("一次购买，永久使用")
        fits(page, size)
        axe_check(page)
        page.click("#new-course")
        page.fill("#course-id", "Not A Slug")
        page.fill("#course-price", "12.345")
        page.check("input[name=plan][value=subscription]")
        page.click("#course-form button[type=submit]")
        expect(page.locator("#id-problem")).to_contain_text("cpp-primer-5th")
        expect(page.locator("#title-problem")).to_be_visible()
        expect(page.locator("#price-problem")).to_be_visible()
        expect(page.locator("#period_days-problem")).to_contain_text("订阅需要填写有效期")
        expect(page.locator("#course-price")).to_have_value("12.345")
        fits(page, size)
        axe_check(page)
        if javascript:
            shot(page, f"console-course-mistakes-{suffix}.png")
        page.fill("#course-id", "rust-monthly-2")
        page.fill("#course-title", "Rust 每月一课（二）")
        page.fill("#course-price", "29")
        page.fill("#course-period", "30")
        page.fill("#course-limit", "3")
        page.fill("#course-description", "每月一课。\n\nOne lesson a month.")
        page.click("#course-form button[type=submit]")
        expect(page.locator(".flash")).to_contain_text("Course saved")
        page.click("a[href='/admin/courses/rust-monthly-2/edit']")
        expect(page.locator("#buy-link")).to_have_value(f"{creator.app.config['PUBLIC_BASE_URL']}/buy/rust-monthly-2")
        copy = page.locator("#copy-buy-link")
        if javascript:
            context.grant_permissions(["clipboard-read", "clipboard-write"])
            copy.click()
            expect(page.locator("#copied")).not_to_be_empty()
        else:
            expect(copy).to_be_hidden()  # the field can still be selected and copied by hand
        fits(page, size)
        axe_check(page)
        if javascript:
            shot(page, f"console-course-editor-{suffix}.png")
        # The form with mistakes answers 400 on purpose (Chromium logs that); nothing else may go wrong.
        assert [p for p in problems if "status of 400" not in p] == []
    finally:
        context.close()
