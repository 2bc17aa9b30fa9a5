"""A creator walks through the console in headless Chromium: TOTP sign-in, search, refunds, comp, course, CSV.

Our app runs in live mode on loopback against the WeChat Pay sandbox over TLS (the `shop` fixture); the
browser is Debian's Chromium (`make system-deps`), never one Playwright downloads.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from conftest import Shop
from screens import shot
from playwright.sync_api import Browser, Page, expect
from servers import BROWSER_WAIT_MS
from test_admin import EMAIL, PASSWORD, paid_order, shop_of

import models
from billing.admin_users import create_admin, enrol_totp
from licensing import verify_license

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def wait_until(page: Page, path: str, selector: str, status: str, timeout: float = BROWSER_WAIT_MS / 1000) -> None:
    """Reload a console page until ``selector`` has ``data-status`` ``status`` (the refund settles in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(path)
        if page.locator(selector).get_attribute("data-status") == status or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    expect(page.locator(selector)).to_have_attribute("data-status", status)


def test_a_creator_signs_in_finds_refunds_provisions_adds_and_exports(browser: Browser, shop: Shop,
                                                                      tmp_path: Path) -> None:
    shop.app.config.update(SESSION_COOKIE_SECURE=False, SESSION_COOKIE_NAME="lbpay_session")
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
        totp = pyotp.parse_uri(enrol_totp(shop_of(shop), EMAIL))
    order = paid_order(shop, email="learner@example.com")
    paid_order(shop, course_id="rust-monthly")
    shop.order()  # one still pending, so the dashboard has a little of everything

    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", base_url=shop.url, accept_downloads=True)
    context.set_default_timeout(BROWSER_WAIT_MS)
    context.add_init_script(CSP_PROBE)
    problems: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before money moves
    try:
        # Sign in with a password and a TOTP code.
        page.goto("/admin/")
        expect(page).to_have_url(f"{shop.url}/admin/login?next=/admin/")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{shop.url}/admin/login/totp")
        page.fill("#code", totp.at(shop.clock()))
        page.click("main button[type=submit]")
        expect(page).to_have_url(f"{shop.url}/admin/")
        expect(page.locator("#chain")).to_contain_text("Audit chain whole")

        # Find the order by WeChat's transaction id.
        page.click("text=订单 Orders")
        page.fill("input[name=q]", order["transaction_id"])
        page.click("form.filters button[type=submit]")
        expect(page).to_have_url(f"{shop.url}/admin/orders/{order['order_id']}")
        expect(page.locator("#transaction-id")).to_have_text(order["transaction_id"])
        path = f"/admin/orders/{order['order_id']}"

        # Refund part: the license stays.
        page.fill("#refund-amount", "30.00")
        page.fill("#refund-reason", "学员只学了一半")
        page.click("#refund-form button[type=submit]")
        wait_until(page, path, "#order-status", "partially_refunded")
        expect(page.locator("#order-status")).to_have_text("部分退款 Partly refunded")
        expect(page.locator("#license-state")).to_contain_text("Active")
        shot(page, "admin-order.png")

        # Refund the rest: the license is revoked, in the page and in the extension's poll.
        expect(page.locator("#refund-amount")).to_have_value("69.00")
        page.fill("#refund-reason", "全额退款")
        page.click("#refund-form button[type=submit]")
        wait_until(page, path, "#order-status", "refunded")
        expect(page.locator("#license-state")).to_contain_text("Revoked")
        expect(page.locator("#timeline")).to_contain_text("Refund succeeded")
        expect(page.locator("#timeline")).to_contain_text("License revoked")
        expect(page.locator("#timeline")).to_contain_text("WeChat Pay refund notification")
        view = shop.poll(order)
        assert view["status"] == "refunded" and view["license"]["state"] == "revoked"

        # Provision a license by hand.
        page.click("text=赠送 Comp")
        page.select_option("#comp-course", "rust-monthly")
        page.fill("#comp-email", "friend@example.com")
        page.fill("#comp-reason", "paid by bank transfer")
        page.click("#comp-form button[type=submit]")
        expect(page.locator("#license-state")).to_contain_text("Active")
        key = page.locator("#license-key").input_value()
        check = verify_license(key, shop_of(shop).license_keys.public_keys(), shop.clock(),
                               expected_course="rust-monthly")
        assert check.status == "valid", check

        # Add a course priced in yuan.
        page.click("text=课程 Courses")
        page.click("#new-course")
        page.fill("#course-id", "python-basics")
        page.fill("#course-title", "Python 入门")
        page.fill("#course-price", "49.90")
        page.click("#course-form button[type=submit]")
        expect(page.locator("main table")).to_contain_text("¥49.90")
        courses = {c["id"]: c for c in shop.get("/api/v1/courses").json()["courses"]}
        assert courses["python-basics"]["price_fen"] == 4990

        # Export the orders as CSV.
        page.click("text=导出 Export")
        with page.expect_download() as download:
            page.click("#export-orders")
        saved = tmp_path / "orders.csv"
        download.value.save_as(saved)
        data = saved.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf") and order["order_id"].encode() in data
        assert "Rust 每月一课".encode() in data

        page.click("text=概览 Dashboard")
        expect(page.locator("#chain")).to_contain_text("Audit chain whole")
        expect(page.locator("svg.chart rect").first).to_be_attached()
        shot(page, "admin-dashboard.png")

        violations = page.evaluate("window.__cspViolations")
        assert (problems, violations) == ([], [])
    finally:
        context.close()


def test_the_console_fits_a_phone(browser: Browser, shop: Shop) -> None:
    shop.app.config.update(SESSION_COOKIE_SECURE=False, SESSION_COOKIE_NAME="lbpay_session")
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    order = paid_order(shop)
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=shop.url)
    try:
        page = context.new_page()
        page.goto("/admin/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"/admin/orders/{order['order_id']}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the order page scrolls sideways on a phone ({width}px)"
    finally:
        context.close()


# --- htmx: the console updates itself, and every flow still works with JavaScript off -------

def signed_in_page(browser: Browser, shop: Shop, *, javascript: bool = True, phone: bool = False) -> tuple[Any, Page]:
    """A browser signed in to the console (desktop or phone size, JavaScript on or off)."""
    size = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    context = browser.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai", base_url=shop.url,
                                  java_script_enabled=javascript, is_mobile=phone, has_touch=phone)
    context.set_default_timeout(BROWSER_WAIT_MS)
    context.add_init_script(CSP_PROBE)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/admin/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    expect(page).to_have_url(f"{shop.url}/admin/")
    return context, page


@pytest.fixture
def creator(shop: Shop) -> Shop:
    shop.app.config.update(SESSION_COOKIE_SECURE=False, SESSION_COOKIE_NAME="lbpay_session")
    shop.sandbox.config.refund_delay = None  # the test says when WeChat settles
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    return shop


def refund_all(page: Page, reason: str) -> str:
    """Refund the whole order through the form; return the new refund's number."""
    page.fill("#refund-reason", reason)
    page.click("#refund-form button[type=submit]")
    row = page.locator("#refund-rows tr").last
    expect(row).to_have_attribute("data-status", "PROCESSING")
    return (row.get_attribute("id") or "").removeprefix("refund-")


def test_a_refund_row_turns_from_processing_to_refunded_without_a_reload(browser: Browser, creator: Shop) -> None:
    order = paid_order(creator)
    context, page = signed_in_page(browser, creator)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"/admin/orders/{order['order_id']}")
        page.evaluate("window.__sameDocument = true")
        # The confirm names the amount the creator typed.
        questions: list[str] = []
        page.on("dialog", lambda dialog: questions.append(dialog.message))
        number = refund_all(page, "学员申请退款")
        assert questions and "¥99.00" in questions[-1]
        row = page.locator(f"#refund-{number}")
        expect(row.locator(".refund-status")).to_contain_text("退款中 Processing")
        expect(page.locator("#refund-summary")).to_contain_text("退款中 processing ¥99.00")
        expect(page.locator("#order-status")).to_have_attribute("data-live", "yes")
        shot(page, "admin-refund-processing.png")
        page.evaluate("window.__sameDocument = true")  # the form's POST loaded a new page; mark this one

        assert creator.sandbox.control("POST", f"refunds/{number}/settle", {"status": "SUCCESS"}).ok
        expect(row).to_have_attribute("data-status", "SUCCESS")
        expect(row.locator(".refund-status")).to_have_text("已退款 Refunded")
        expect(page.locator("#order-status")).to_have_attribute("data-status", "refunded")
        expect(page.locator("#order-status")).to_have_attribute("data-live", "no")  # the poller stopped
        expect(page.locator("#license-state")).to_contain_text("Revoked")
        expect(page.locator("#refund-summary")).to_contain_text("¥99.00")
        assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
        shot(page, "admin-refund-settled.png")
        assert (problems, page.evaluate("window.__cspViolations")) == ([], [])
    finally:
        context.close()


def test_search_narrows_the_list_as_you_type(browser: Browser, creator: Shop) -> None:
    orders = [paid_order(creator, email=f"learner{n}@example.com") for n in range(3)]
    pending = creator.order()
    context, page = signed_in_page(browser, creator)
    try:
        page.goto("/admin/orders")
        page.evaluate("window.__sameDocument = true")
        expect(page.locator("tr.order-row")).to_have_count(4)
        page.locator("input[name=q]").press_sequentially("learner1@example.com", delay=20)
        expect(page.locator("tr.order-row")).to_have_count(1)
        expect(page.locator("tr.order-row")).to_contain_text(orders[1]["order_id"])
        expect(page).to_have_url(re.compile(r"/admin/orders\?q=learner1%40example\.com"))
        page.locator("input[name=q]").fill("")
        page.select_option("select[name=status]", "pending")
        expect(page.locator("tr.order-row")).to_have_count(1)
        expect(page.locator("tr.order-row")).to_contain_text(pending["order_id"])
        expect(page.locator("tr.order-row")).to_contain_text("待支付 Pending")
        assert page.evaluate("window.__sameDocument") is True, "the list was not updated in place"
        shot(page, "admin-orders-search.png")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()


def test_the_same_flows_work_with_javascript_off(browser: Browser, creator: Shop) -> None:
    order = paid_order(creator, email="nojs@example.com")
    paid_order(creator, email="other@example.com")
    context, page = signed_in_page(browser, creator, javascript=False)
    try:
        # Search: a plain GET form; one match opens the order.
        page.click("text=订单 Orders")
        page.fill("input[name=q]", "nojs@example.com")
        page.click("#order-filters button[type=submit]")
        expect(page).to_have_url(f"{creator.url}/admin/orders/{order['order_id']}")
        # Refund: a plain POST; a reload shows the settled state.
        # Without JavaScript no confirm() runs: the server asks on a page of its own first.
        page.fill("#refund-reason", "no script")
        page.click("#refund-form button[type=submit]")
        expect(page.locator("#confirm-refund")).to_be_visible()
        page.click("#confirm-refund-form button[type=submit]")
        row = page.locator("#refund-rows tr").last
        expect(row).to_have_attribute("data-status", "PROCESSING")
        number = (row.get_attribute("id") or "").removeprefix("refund-")
        assert creator.sandbox.control("POST", f"refunds/{number}/settle", {"status": "SUCCESS"}).ok
        wait_until(page, f"/admin/orders/{order['order_id']}", f"#refund-{number}", "SUCCESS")
        expect(page.locator("#order-status")).to_have_attribute("data-status", "refunded")
        # Revoke and reinstate: plain POSTs.
        page.fill("#reinstate-form input[name=reason]", "refund was a mistake")
        page.click("#reinstate-form button[type=submit]")
        expect(page.locator("#license-state")).to_contain_text("Active")
        # Export: one range, two buttons.
        page.click("text=导出 Export")
        page.fill("#export-since", "2000-01-01")
        with page.expect_download() as download:
            page.click("#export-refunds")
        assert download.value.suggested_filename.startswith("refunds-2000-01-01")
    finally:
        context.close()


def test_phone_console_pages_are_cards_that_fit(browser: Browser, creator: Shop) -> None:
    order = paid_order(creator, email="phone@example.com")
    context, page = signed_in_page(browser, creator, phone=True)
    try:
        for path, name in ((f"/admin/orders/{order['order_id']}", "admin-order-phone.png"),
                           ("/admin/orders", "admin-orders-phone.png"), ("/admin/", "admin-dashboard-phone.png")):
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
            shot(page, name)
        # The header row of a card table is hidden; each cell names its column.
        page.goto("/admin/orders")
        expect(page.locator("#order-rows tr.head")).to_be_hidden()
        expect(page.locator("#order-rows td[data-label]").first).to_be_visible()
    finally:
        context.close()
