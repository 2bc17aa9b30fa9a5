"""A creator settles alerts and bill differences, reads the audit trail and finds a customer, in headless Chromium.

Each walk runs on a phone (390×844) and a desktop (1280×800), with JavaScript on and off; axe-core (pinned
in package-lock.json, loaded from node_modules, never the network) checks every page it passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Shop
from playwright.sync_api import Browser, Page, expect
from matrix import sizes_and_scripts
from servers import BROWSER_WAIT_MS
from test_admin import EMAIL, PASSWORD, paid_order, shop_of
from screens import shot
from test_admin_browser import CSP_PROBE, creator  # noqa: F401 (the creator fixture)
from test_console_pages import plant_alert, plant_difference

import models
from billing import audit
from database import write_transaction
from operations.scheduler import run_job

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}"""


def settled(page: Page) -> None:
    """Wait until the page is laid out as people see it: its stylesheet applied, its deferred scripts run.

    A click that navigates returns once the new document is committed, and an ``expect`` on text passes as
    soon as the rows are parsed; the stylesheet may still be on its way (a busy machine answers its
    revalidation late). Chromium then lays out the bare table, as wide as its longest unbroken text (an
    order id: about 620 px on a phone), so measuring before "load" measured a page nobody ever sees.
    """
    page.wait_for_load_state("load")


def axe_check(page: Page) -> None:
    """No serious or critical axe-core violation on the page as it stands.

    With JavaScript off, Chromium runs no page script at all (axe.run never settles): the same walk with
    JavaScript on checks the same server-rendered pages.
    """
    if not _javascript(page):
        return
    settled(page)  # contrast is only meaningful with the page's own colours
    assert AXE.exists(), "axe-core is missing: run `make static-vendor` (npm ci at the repo root)"
    # Evaluated through the DevTools protocol, so the page's CSP (script-src 'self') stays as it is.
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    found = page.evaluate(AXE_RUN)
    assert found == [], f"{page.url}: {found}"


def _javascript(page: Page) -> bool:
    return bool(getattr(page.context, "_lbpay_javascript", True))


def open_console(browser: Browser, shop: Shop, size: str, javascript: bool) -> tuple[Any, Page, list[str]]:
    context = browser.new_context(viewport=SIZES[size], locale="zh-CN", timezone_id="Asia/Shanghai",
                                  base_url=shop.url, java_script_enabled=javascript,
                                  is_mobile=size == "phone", has_touch=size == "phone")
    context.set_default_timeout(BROWSER_WAIT_MS)
    context.add_init_script(CSP_PROBE)
    context._lbpay_javascript = javascript  # type: ignore[attr-defined]
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto("/admin/login")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    expect(page).to_have_url(f"{shop.url}/admin/")
    return context, page, problems


def fits(page: Page, size: str) -> None:
    if not _javascript(page):  # measured in the walk with JavaScript on: the same pages
        return
    settled(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= SIZES[size]["width"], f"{page.url} scrolls sideways ({width}px)"


@sizes_and_scripts(("phone", True), ("desktop", False))
def test_a_creator_settles_what_needs_attention_and_the_dashboard_clears(browser: Browser, creator: Shop,
                                                                          size: str, javascript: bool) -> None:
    order = paid_order(creator, email="learner1@example.com")
    with models.db.connection_context():
        run_job(shop_of(creator), "bill_compare", "test")  # the real job, against the sandbox's bills
    plant_difference(creator, order["out_trade_no"])
    plant_alert(creator)
    context, page, problems = open_console(browser, creator, size, javascript)
    suffix = f"{size}{'' if javascript else '-nojs'}"
    try:
        card = page.locator("#attention")
        expect(page.locator("#attention-count")).to_have_text("2")
        expect(card.locator("tr.attention-difference")).to_contain_text("微信已收款，本店未发许可证")
        expect(card.locator("tr.attention-alert")).to_contain_text("每日备份失败")
        expect(page.locator("#attention-badge")).to_have_text("2")
        expect(page.locator("#no-alert-channel")).to_be_visible()
        expect(page.locator("#bill-words")).to_contain_text("days checked")
        expect(page.locator("#bill-words")).not_to_contain_text("checked=")
        fits(page, size)
        axe_check(page)
        if javascript:
            shot(page, f"console-dashboard-attention-{suffix}.png")

        page.click("#nav-alerts")
        expect(page).to_have_url(f"{creator.url}/admin/alerts")
        fits(page, size)
        axe_check(page)
        if javascript:
            shot(page, f"console-alerts-{suffix}.png")
        page.click("tr.alert button.acknowledge")
        expect(page.locator(".flash")).to_contain_text("Alert acknowledged")
        expect(page.locator("tr.alert .alert-state")).to_contain_text(EMAIL)
        page.click("tr.alert button.resolve")
        expect(page.locator("#no-alerts")).to_be_visible()
        page.fill("tr.difference input[name=note]", "已补发许可证 license issued by hand")
        page.click("tr.difference button[type=submit]")
        expect(page.locator("#no-differences")).to_be_visible()
        expect(page.locator("#attention-badge")).to_have_count(0)
        page.goto("/admin/alerts?state=resolved")
        expect(page.locator("tr.alert .alert-state")).to_contain_text("Resolved")
        axe_check(page)

        page.click("text=概览 Dashboard")
        expect(page.locator("#attention-count")).to_have_text("0")
        expect(page.locator("#nothing-needs-you")).to_be_visible()

        page.click("text=审计 Audit")
        expect(page.locator("#chain-words")).to_contain_text("The audit trail is whole")
        page.select_option("#audit-filters select[name=kind]", "alert")
        page.click("#audit-filters button[type=submit]")
        expect(page.locator("tr.audit-row")).to_have_count(2)
        expect(page.locator("tr.audit-row").first).to_contain_text("Alert resolved")
        page.fill("#audit-filters input[name=order]", order["order_id"])
        page.select_option("#audit-filters select[name=kind]", "")
        page.click("#audit-filters button[type=submit]")
        expect(page.locator("tr.audit-row").first).to_contain_text("Bill difference settled")
        fits(page, size)
        axe_check(page)
        if javascript:
            shot(page, f"console-audit-{suffix}.png")

        page.click("text=顾客 Customers")
        fits(page, size)
        axe_check(page)
        page.fill("#customer-q", "learner1")
        page.click("#customer-search button[type=submit]")
        expect(page.locator("#found-customers")).to_contain_text("learner1@example.com")
        axe_check(page)
        if javascript:
            shot(page, f"console-customers-{suffix}.png")
        page.click("#found-customers a")
        expect(page.locator("#customer-email")).to_have_text("learner1@example.com")
        expect(page.locator("#paid")).to_have_text("¥99.00")
        fits(page, size)
        axe_check(page)
        if javascript:
            shot(page, f"console-customer-{suffix}.png")
        page.click("form.resend button")
        expect(page.locator(".flash")).to_contain_text("The license mail is queued")

        # Typing part of an e-mail narrows the order list (htmx); without JavaScript, the form submits.
        page.click("text=订单 Orders")
        page.fill("input[name=q]", "learner1")
        if not javascript:
            page.click("form.filters button[type=submit]")
            expect(page).to_have_url(f"{creator.url}/admin/orders/{order['order_id']}")
        else:
            expect(page.locator("#total")).to_contain_text("1 order")
            expect(page.locator("tr.order-row")).to_contain_text(order["order_id"])

        violations = page.evaluate("window.__cspViolations") if javascript else []
        assert (problems, violations) == ([], [])
    finally:
        context.close()


def test_the_audit_page_is_measured_as_styled_even_when_its_stylesheet_comes_late(browser: Browser,
                                                                                   creator: Shop) -> None:
    """The CI failure of the walk above (audit?order=… "scrolls sideways (620px)" on a phone), made certain.

    The stylesheet is held back while the filtered page arrives: the rows are there, the page is still
    bare and wider than the phone, and the walk's measure must not trust it until the stylesheet applies.
    """
    order = paid_order(creator, email="late-style@example.com")
    context, page, problems = open_console(browser, creator, "phone", True)
    held: list[Any] = []
    try:
        page.goto("/admin/audit")
        page.route("**/static/admin.css", lambda route: held.append(route))
        page.fill("#audit-filters input[name=order]", order["order_id"])
        page.click("#audit-filters button[type=submit]")
        expect(page.locator("tr.audit-row").first).to_contain_text(order["order_id"])
        assert len(held) == 1  # the rows are on the page, its stylesheet is not
        bare = page.evaluate("document.documentElement.scrollWidth")
        assert bare > SIZES["phone"]["width"], bare  # what the walk measured in CI
        assert page.evaluate("document.readyState") != "complete"  # and what settled() waits for
        held[0].continue_()
        fits(page, "phone")
        assert page.evaluate("getComputedStyle(document.querySelector('table.list.cards tr.head')).display") == "none"
        assert problems == []
    finally:
        context.close()


def test_long_audit_details_wrap_on_a_phone(browser: Browser, creator: Shop) -> None:
    """Long unbroken words in an event (an actor, a note, a WeChat number) wrap inside the card, details open."""
    order = paid_order(creator, email="long-words@example.com")
    with models.db.connection_context():
        row = models.Order.get(models.Order.public_id == order["order_id"])
        with write_transaction():
            audit.record("bill_difference.resolved", at=creator.clock(), order=row, ip="2001:db8::1234:5678:9abc",
                         actor="admin:" + "a" * 50 + "@" + "b" * 45 + ".example.com",  # 114 of the column's 120
                         detail={"note": "补" * 40 + "x" * 260, "transaction_id": "4" * 64,
                                 "after": {"title": "W" * 120, "plan": "one_time"}})
    context, page, problems = open_console(browser, creator, "phone", True)
    try:
        page.goto(f"/admin/audit?order={order['order_id']}")
        for details in page.locator("tr.audit-row details").all():
            details.locator("summary").click()
        expect(page.locator("tr.audit-row details[open] .detail").first).to_contain_text("x" * 40)
        fits(page, "phone")
        axe_check(page)
        shot(page, "console-audit-long-details-phone.png")
        assert problems == []
    finally:
        context.close()
