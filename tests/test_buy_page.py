"""The purchase page in Chromium (issue 18, items 3 and 5): the state before the pay form, recovery by
e-mail in view, the same-e-mail notice, a lifetime license read as such, and text that can be read
(at least 4.5:1 against its background, WCAG AA) on the green buttons and in the boxes."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from servers import RunningServer, sandbox_mode_server
from test_browser import COURSE_ID, COURSE_TITLE, Problems, new_context

pytestmark = pytest.mark.browser

# Every element with text of its own that is on screen: its colour (opacity included) laid over the
# background it really stands on (the first opaque background up the tree, the translucent ones blended).
CONTRAST = """
() => {
  const parse = (c) => { const p = c.match(/rgba?\\(([^)]+)\\)/)[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
                         return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const lum = (c) => { const f = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); };
                       return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let bg = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  const found = [];
  for (const el of document.querySelectorAll("body *")) {
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (!box.width || !box.height || style.visibility === "hidden" || el.closest("button:disabled")) continue;
    let alpha = 1;
    for (let e = el; e; e = e.parentElement) alpha *= parseFloat(getComputedStyle(e).opacity);
    const fg = parse(style.color); fg[3] *= alpha;
    const bg = background(el), text = over(fg, bg);
    const a = lum(text), b = lum(bg);
    found.push({ text: el.textContent.trim().slice(0, 40), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05),
                 color: style.color, background: "rgb(" + bg.slice(0, 3).map(Math.round).join(",") + ")" });
  }
  return found;
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    commands = [("courses", "add", COURSE_ID, "--title", COURSE_TITLE, "--price-fen", "9900")]
    try:
        with sandbox_mode_server(tmp_path_factory.mktemp("lbpay-buy-page"), commands) as started:
            yield started
    except RuntimeError as exc:
        pytest.fail(str(exc))


def hard_to_read(page: Page) -> list[dict[str, Any]]:
    return [t for t in page.evaluate(CONTRAST) if t["ratio"] < 4.5]


def place_order(page: Page, email: str) -> dict[str, Any]:
    page.fill("#email", email)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/orders") and r.request.method == "POST") as placed:
        page.click("#pay")
    assert placed.value.status == 201, placed.value.text()
    expect(page.locator("#qr")).to_be_visible()
    order: dict[str, Any] = placed.value.json()
    return order


def pay(page: Page, base: str) -> None:
    href = page.get_attribute("#sandbox-pay", "href")
    assert href
    phone = page.context.new_page()
    phone.goto(base + href)
    phone.get_by_role("button", name=re.compile("支付 Pay")).click()
    expect(phone.locator("[data-outcome]")).to_have_attribute("data-outcome", "paid")
    phone.close()


def above(page: Page, first: str, second: str) -> bool:
    """Whether ``first`` is shown higher on the page than ``second`` (both visible)."""
    a, b = page.locator(first).bounding_box(), page.locator(second).bounding_box()
    assert a is not None and b is not None, (first, second)
    return a["y"] + a["height"] <= b["y"]


def test_text_on_the_green_buttons_and_in_the_boxes_is_readable(browser: Browser, server: RunningServer) -> None:
    context = new_context(browser, "desktop")
    try:
        page = context.new_page()
        seen: dict[str, list[dict[str, Any]]] = {}
        for state in ("", "?demo_error=wechat_unavailable", "?demo_error=payment_cancelled"):
            page.goto(f"{server.base}/buy/{COURSE_ID}{state}")
            expect(page.locator("#pay")).to_be_visible()
            seen[state or "form"] = hard_to_read(page)
        place_order(page, "contrast@example.com")
        expect(page.locator("#email-notice")).to_be_visible()
        seen["qr"] = hard_to_read(page)
        pay(page, server.base)
        expect(page.locator("#license-box")).to_be_visible(timeout=15_000)
        seen["license"] = hard_to_read(page)
        assert seen == {name: [] for name in seen}
        # The check itself sees the colours that matter: the pay button's words on its green.
        page.goto(f"{server.base}/buy/{COURSE_ID}")
        pay_words = [t for t in page.evaluate(CONTRAST) if t["text"].startswith("微信支付")]
        assert pay_words and pay_words[0]["background"] != "rgb(255,255,255)"
    finally:
        context.close()


def test_the_state_comes_first_and_recovery_by_email_is_in_view(browser: Browser, server: RunningServer) -> None:
    context = new_context(browser, "desktop")
    problems = Problems()
    try:
        page = problems.watch(context.new_page())
        page.goto(f"{server.base}/buy/{COURSE_ID}")
        # Recovery needs no click to find, and comes before Pay.
        expect(page.locator("#resend-email")).to_be_visible()
        assert page.locator("details#resend").count() == 0
        assert above(page, "#resend", "#start")

        # Any order placed with an e-mail says what a returning learner needs to hear.
        place_order(page, "state@example.com")
        notice = page.locator("#email-notice")
        expect(notice).to_contain_text("无需再次付款")
        expect(notice).to_contain_text("no need to pay again")
        expect(page.locator("#resend")).to_be_hidden()  # one thing at a time: paying

        # Cancelled: the news is above the form offered again.
        page.click("#cancel")
        expect(page.locator("#notice")).to_have_attribute("data-code", "payment_cancelled")
        expect(page.locator("#start")).to_be_visible()
        assert above(page, "#notice", "#start")

        # Owned: after paying and reloading, the license is above the pay form, and for good.
        place_order(page, "state@example.com")
        pay(page, server.base)
        expect(page.locator("#license-box")).to_be_visible(timeout=15_000)
        page.reload()
        expect(page.locator("#license-box")).to_be_visible()
        expect(page.locator("#license-expiry")).to_have_text("永久 · Lifetime")
        box = page.locator("#license-box").inner_text()
        assert "Valid until" not in box and "有效期至" not in box and not re.search(r"21\d\d", box)
        if page.locator("#start").is_visible():
            assert above(page, "#license-box", "#start")
        problems.assert_none(page)
    finally:
        context.close()


def test_without_javascript_the_notice_shows_and_an_owner_reads_lifetime(browser: Browser,
                                                                        server: RunningServer) -> None:
    context = new_context(browser, "desktop", java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{server.base}/buy/{COURSE_ID}")
        expect(page.locator("#resend-email")).to_be_visible()
        page.fill("#email", "nojs-owner@example.com")
        page.click("#pay")
        expect(page.locator("#email-notice")).to_contain_text("no need to pay again")
        expect(page.locator("#email-notice")).to_contain_text("无需再次付款")
        href = page.get_attribute("#sandbox-pay", "href")
        assert href
        phone = context.new_page()
        phone.goto(server.base + href)
        phone.get_by_role("button", name=re.compile("支付 Pay")).click()
        expect(phone.locator("[data-outcome]")).to_have_attribute("data-outcome", "paid")
        phone.close()
        for _ in range(30):
            page.reload()
            if page.locator("#license").count():
                break
            page.wait_for_timeout(500)
        expect(page.locator("#license-expiry")).to_have_text("永久 · Lifetime")

        # The same browser tries to pay again: refused calmly, the license shown, for good.
        page.goto(f"{server.base}/buy/{COURSE_ID}")
        page.click("#pay")
        expect(page.locator("#notice")).to_have_attribute("data-code", "already_licensed")
        expect(page.locator("#license-expiry")).to_have_text("永久 · Lifetime")
        assert not re.search(r"21\d\d", page.locator("#license-box").inner_text())
    finally:
        context.close()
