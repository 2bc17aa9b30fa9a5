"""The kit's panel with Alipay on: one buy button per method, each naming its method, and Alipay's scan screen."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from screens import shot
from test_vscode_kit import CSP_PROBE, build_kit, page_html, post_state

from billing.orders import qr_svg

QR = qr_svg("https://qr.alipay.com/bax08431example")  # drawn as the shop draws an order's code
COURSE = {"id": "cpp-primer-5th", "title": "C++ Primer 第5版", "price_fen": 9900, "plan": "one_time",
          "period_days": None}


@pytest.fixture(scope="module")
def built() -> Path:
    """The kit compiled by its pinned tsc, as test_vscode_kit builds it (once, under its lock)."""
    return build_kit()


@pytest.mark.browser
def test_the_panel_offers_each_method_and_shows_alipays_scan_screen(built: Path, browser: Any) -> None:
    base: dict[str, Any] = {"course": COURSE, "order": None, "error": None, "license": None, "purchases": None,
                            "restore": None, "notice": None}
    expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=30)).isoformat()
    page = browser.new_page(viewport={"width": 390, "height": 760}, locale="zh-CN")
    page.add_init_script(CSP_PROBE)
    html = page_html(built)
    page.route("https://webview.test/", lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto("https://webview.test/")
    page.wait_for_function("window.__sent.length > 0")

    def post(state: dict[str, Any]) -> None:
        post_state(page, state)

    post({**base, "phase": "ready", "methods": ["wechat", "alipay"]})
    assert page.text_content("#buy") == "微信支付购买 · Buy with WeChat Pay"
    assert page.text_content("#buy-alipay") == "支付宝购买 · Buy with Alipay"
    shot(page, "vscode-buy-methods.png")
    page.click("#buy-alipay")
    assert page.evaluate("window.__sent.at(-1)") == {"type": "buy", "email": "", "code": "", "method": "alipay"}
    page.click("#buy")  # with a choice, WeChat's button names its method too
    assert page.evaluate("window.__sent.at(-1)") == {"type": "buy", "email": "", "code": "", "method": "wechat"}
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    post({**base, "phase": "ready", "methods": ["alipay"]})
    assert page.locator("#buy").count() == 0 and page.locator("#buy-alipay").count() == 1

    post({**base, "phase": "waiting", "order": {"order_id": "ord_x", "amount_fen": 9900, "qr_svg": QR,
                                                 "expires_at": expires, "status": "pending", "method": "alipay"}})
    assert page.text_content("#scan-with").startswith("请使用支付宝扫一扫支付 ¥99.00")
    assert page.get_attribute("#qr", "alt") == "支付宝二维码 Alipay QR code"
    shot(page, "vscode-alipay-qr.png")
    assert page.evaluate("window.__cspViolations") == []
