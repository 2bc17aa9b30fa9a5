"""The buy button on the creator's own site (issue 22, item 4), in Chromium: two "creator sites" on loopback
ports, one listed in LBPAY_BUY_BUTTON_ORIGINS and one not; the overlay buys inside the frame on the first,
the browser refuses to frame the page on the second, and without scripts the button is a plain link."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import screens
from conftest import SHOP_ORIGIN, Shop
from playwright.sync_api import Browser, Page, expect
from matrix import devices
from test_admin import Console, console  # noqa: F401  (the signed-in console fixture)
from test_console_browser import settled
from test_browser import DEVICES

COURSE = "cpp-primer-5th"


class CreatorSite:
    """A creator's page on a loopback port with the console's snippet in it (the shop's address set later)."""

    def __init__(self) -> None:
        self.shop_url = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                page = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
                        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>我的课程</title></head>'
                        f'<body><h1>C++ Primer 精讲</h1><p>第 1–19 章，配套练习。</p>'
                        f'<a id="buy" href="{site.shop_url}/buy/{COURSE}" data-lbpay-buy>购买《C++ Primer 第5版》</a>\n'
                        f'<script src="{site.shop_url}/static/buy-button.js" defer></script></body></html>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[CreatorSite, CreatorSite]]:
    allowed, other = CreatorSite(), CreatorSite()
    yield allowed, other
    allowed.stop()
    other.stop()


@pytest.fixture
def shop_settings(sites: tuple[CreatorSite, CreatorSite]) -> dict[str, Any]:
    return {"BUY_BUTTON_ORIGINS": sites[0].origin + " https://course.example.com"}


@pytest.fixture
def shop_for_sites(shop: Shop, sites: tuple[CreatorSite, CreatorSite]) -> Shop:
    for site in sites:
        site.shop_url = shop.url
    return shop


def test_only_the_embed_page_may_be_framed_and_only_by_the_listed_origins(shop_for_sites: Shop,
                                                                          sites: tuple[CreatorSite, CreatorSite]) -> None:
    embed = shop_for_sites.get(f"/buy/{COURSE}/embed")
    assert embed.status_code == 200
    csp = embed.headers["Content-Security-Policy"]
    assert f"frame-ancestors {sites[0].origin} https://course.example.com;" in csp
    assert "X-Frame-Options" not in embed.headers and "script-src 'self'" in csp
    page = shop_for_sites.get(f"/buy/{COURSE}")
    assert page.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert shop_for_sites.get("/buy/no-such-course/embed").status_code == 404


def overlay_frame(page: Page) -> Any:
    page.click("#buy")
    expect(page.locator("[data-lbpay-overlay]")).to_be_visible()
    return page.frame_locator("[data-lbpay-overlay] iframe")


@pytest.mark.browser
@devices("desktop", "phone")
def test_the_overlay_sells_inside_a_frame_on_an_allowed_site(browser: Browser, shop_for_sites: Shop,
                                                             sites: tuple[CreatorSite, CreatorSite], device: str) -> None:
    context = browser.new_context(**DEVICES[device], locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(sites[0].origin + "/")
        frame = overlay_frame(page)
        expect(frame.locator("h1")).to_have_text("C++ Primer 第5版")
        expect(frame.locator("header.top")).to_have_count(0)  # no site header inside someone else's page
        screens.shot(page, f"buy-button-overlay-{device}.png", full_page=False)
        with page.expect_response(lambda r: r.url.endswith("/api/v1/orders") and r.request.method == "POST") as placed:
            frame.locator("#pay").click()
        assert placed.value.status == 201, placed.value.text()
        expect(frame.locator("#qr")).to_be_visible()
        screens.shot(page, f"buy-button-qr-{device}.png", full_page=False)
        shop_for_sites.sandbox.pay(placed.value.json()["out_trade_no"])
        expect(frame.locator("#license-box")).to_be_visible(timeout=30_000)
        assert frame.locator("#license").input_value()
        page.keyboard.press("Escape")
        expect(page.locator("[data-lbpay-overlay]")).to_have_count(0)
    finally:
        context.close()


@pytest.mark.browser
def test_a_site_not_listed_cannot_frame_the_purchase(browser: Browser, shop_for_sites: Shop,
                                                     sites: tuple[CreatorSite, CreatorSite]) -> None:
    context = browser.new_context(**DEVICES["desktop"], locale="zh-CN")
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(sites[1].origin + "/")
        with page.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused:
            page.click("#buy")
        assert "has been blocked" in refused.value.text and f"frame-ancestors {sites[0].origin} " in refused.value.text
        embedded = [f for f in page.frames if f.url.endswith(f"/buy/{COURSE}/embed")]
        assert all(f.locator("#buy").count() == 0 for f in embedded)  # nothing of ours drawn there
        assert all(f.locator("#pay").count() == 0 for f in page.frames)
    finally:
        context.close()


@pytest.mark.browser
def test_without_scripts_the_button_is_a_plain_link_to_the_purchase_page(browser: Browser, shop_for_sites: Shop,
                                                                         sites: tuple[CreatorSite, CreatorSite]) -> None:
    context = browser.new_context(**DEVICES["phone"], locale="zh-CN", java_script_enabled=False)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto(sites[1].origin + "/")  # any site, listed or not
        page.click("#buy")
        expect(page).to_have_url(re.compile(rf"/buy/{COURSE}$"))
        expect(page.locator("#pay")).to_be_visible()
    finally:
        context.close()


@pytest.mark.browser
def test_the_console_gives_the_link_and_the_snippet_to_copy(console: Console, browser: Browser,
                                                            sites: tuple[CreatorSite, CreatorSite]) -> None:
    html = console.page("/admin/buy-button")
    assert sites[0].origin in html and "https://course.example.com" in html
    assert "data-lbpay-buy" in html and "/static/buy-button.js" in html
    from test_admin import EMAIL, PASSWORD
    console.shop.app.config.update(SESSION_COOKIE_NAME="lbpay_session")  # __Host- cookies need HTTPS
    for name in ("phone", "desktop"):
        context = browser.new_context(viewport=DEVICES[name]["viewport"], locale="zh-CN", timezone_id="Asia/Shanghai")
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.shop.url)
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto(console.shop.url + "/admin/login")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        page.goto(console.shop.url + "/admin/buy-button")
        section = page.locator(f"#button-{COURSE}")
        section.locator("button[data-copy^=snippet]").click()
        expect(section.locator(".copied")).to_have_text("已复制 Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.startswith(f'<a href="{SHOP_ORIGIN}/buy/{COURSE}" data-lbpay-buy>')  # the public address
        assert copied.endswith(f'<script src="{SHOP_ORIGIN}/static/buy-button.js" defer></script>')
        section.locator("button[data-copy^=link]").click()
        assert page.evaluate("navigator.clipboard.readText()") == f"{SHOP_ORIGIN}/buy/{COURSE}"
        settled(page)  # measured once its stylesheet applies
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (name, overflow)
        screens.shot(page, f"admin-buy-button-{name}.png")
        context.close()
