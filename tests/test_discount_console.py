"""The console's discount pages and `lbpay codes`: create, pause, see uses and revenue; screenshots."""

from __future__ import annotations


import pytest

import screens
from conftest import Shop
from servers import BROWSER_WAIT_MS
from test_admin import Console, console, paid_order  # noqa: F401  (the signed-in console fixture)
from test_console_browser import settled

import models



def test_a_code_made_in_the_console_sells_pauses_and_shows_its_revenue(console: Console) -> None:
    made = console.post("/admin/codes/new", {"kind": "percent", "code": "wednesday", "percent": "30",
                                             "course": "cpp-primer-5th", "max_uses": "10",
                                             "note": "周三学习小组"})
    assert made.status_code == 303, made.text
    detail_path = made.headers["Location"]
    shop: Shop = console.shop
    sold = paid_order(shop, code="WEDNESDAY", email="learner@example.com")
    assert (sold["list_price_fen"], sold["discount_fen"], sold["amount_fen"]) == (9900, 2970, 6930)

    listing = console.page("/admin/codes")
    assert "WEDNESDAY" in listing and "1 / 10" in listing and "¥69.30" in listing
    detail = console.page(detail_path)
    assert sold["out_trade_no"] in detail and "¥29.70" in detail and "周三学习小组" in detail

    order_page = console.page(f"/admin/orders/{sold['order_id']}")
    assert "¥69.30" in order_page and "¥99.00" in order_page and "¥29.70" in order_page and "WEDNESDAY" in order_page
    export = console.get("/admin/export/orders.csv").content.decode("utf-8-sig")
    assert "list price (yuan),discount (yuan),code" in export.splitlines()[0]
    assert ",99.00,29.70,WEDNESDAY" in export
    with models.db.connection_context():
        from billing.mail import render_queued_license
        mail = models.MailOutbox.get(models.MailOutbox.to == "learner@example.com")
        _, text, html = render_queued_license(mail)
    assert "¥99.00 − ¥29.70 = ¥69.30" in text and "¥99.00 − ¥29.70 = ¥69.30" in html
    assert console.post(detail_path + "/pause", {"paused": "1"}).status_code == 303
    refused = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "code": "wednesday"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "code_expired"
    assert "已暂停 paused" in console.page("/admin/codes")
    assert console.post(detail_path + "/pause", {"paused": "0"}).status_code == 303
    again = shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "code": "wednesday"})
    assert again.status_code == 201, again.text
    with models.db.connection_context():
        actions = [e.action for e in models.AuditEvent.select().order_by(models.AuditEvent.id)]
    assert actions.count("discount.created") == 1 and "discount.paused" in actions and "discount.resumed" in actions


def test_a_launch_price_without_an_end_is_refused_with_a_reason(console: Console) -> None:
    response = console.post("/admin/codes/new", {"kind": "launch", "amount": "49", "course": "cpp-primer-5th"})
    assert response.status_code == 400 and "ends" in response.text
    with models.db.connection_context():
        assert models.DiscountCode.select().count() == 0


@pytest.mark.browser
def test_the_code_pages_on_a_phone_and_a_desktop(console: Console, browser) -> None:
    made = console.post("/admin/codes/new", {"kind": "percent", "code": "STUDYGROUP", "percent": "20",
                                      "max_uses": "30", "once_per_buyer": "on", "note": "周三学习小组"})
    assert made.status_code == 303, made.text
    console.post("/admin/codes/new", {"kind": "launch", "amount": "49", "course": "cpp-primer-5th",
                                      "max_uses": "100", "ends_at": "2030-01-01T00:00"})
    console.post("/admin/codes/new", {"kind": "percent", "code": "GIFT", "percent": "100",
                                      "course": "cpp-primer-5th", "max_uses": "3"})
    paid_order(console.shop, course_id="rust-monthly", code="studygroup", email="a@example.com")
    console.shop.post("/api/v1/orders", {"course_id": "cpp-primer-5th", "code": "GIFT", "email": "b@example.com"})
    from test_admin import EMAIL, PASSWORD
    console.shop.app.config.update(SESSION_COOKIE_NAME="lbpay_session")  # __Host- cookies need HTTPS
    for name, size in (("phone", {"width": 390, "height": 844}), ("desktop", {"width": 1280, "height": 800})):
        context = browser.new_context(viewport=size, locale="zh-CN", timezone_id="Asia/Shanghai")
        context.set_default_timeout(BROWSER_WAIT_MS)
        page = context.new_page()
        page.goto(console.shop.url + "/admin/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        assert page.url == console.shop.url + "/admin/", (page.url, page.inner_text("body")[:600])
        for path, shot in (("/admin/codes", "codes"), ("/admin/codes/new", "code-new"), ("/admin/codes/1", "code")):
            page.goto(console.shop.url + path)
            assert page.locator("main").is_visible()
            settled(page)  # measured once its stylesheet applies
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, name, overflow)  # nothing wider than the screen
            screens.shot(page, f"admin-{shot}-{name}.png")
        context.close()
