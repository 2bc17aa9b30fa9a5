"""Every error a learner can meet has words in both languages and a next step, and the purchase page shows each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml
from matrix import LONG
from servers import RunningServer, sandbox_mode_server

from billing import CATALOGUE, BillingError, error_body

SPEC = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())
ACTIONS = SPEC["components"]["schemas"]["ErrorDetail"]["properties"]["action"]["enum"]
CJK = re.compile(r"[\u4e00-\u9fff]")
# The failures the issue names, each with the code that stands for it.
LEARNER_FAILURES = {
    "course not for sale": "course_not_found", "WeChat unavailable": "wechat_unavailable",
    "order expired": "order_expired", "payment cancelled": "payment_cancelled",
    "payment failed or insufficient balance": "payment_failed", "amount mismatch under review": "amount_mismatch",
    "license generation delayed": "license_delayed", "refunded": "refunded", "rate limited": "rate_limited",
    "bad request": "bad_request",
}


def test_every_failure_a_learner_can_meet_has_a_code() -> None:
    assert set(LEARNER_FAILURES.values()) <= set(CATALOGUE)


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_code_has_both_languages_and_a_documented_action(code: str) -> None:
    text = CATALOGUE[code]
    assert re.fullmatch(r"[a-z][a-z0-9_]*", code)
    assert CJK.search(text.message_zh), f"{code}: message_zh has no Chinese"
    assert text.message_en and not CJK.search(text.message_en) and text.message_en[0].isupper()
    assert text.action in ACTIONS, f"{code}: action {text.action!r} is not in openapi.yaml"
    assert 200 <= text.status < 600
    body = error_body(code)["error"]
    assert body == {"code": code, "message_zh": text.message_zh, "message_en": text.message_en,
                    "action": text.action}
    assert BillingError(code).status == text.status


# --- the purchase page, in Chromium -------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with sandbox_mode_server(tmp_path_factory.mktemp("lbpay-errors")) as server:
        yield server


CALM_CODES = {"payment_cancelled", "payment_failed", "already_licensed"}


def one_of_each_kind() -> list[str]:
    """The calm codes, and the first code of each action: each way the page can present a code."""
    first: dict[str, str] = {}
    for code, text in sorted(CATALOGUE.items()):
        if code not in CALM_CODES:
            first.setdefault(text.action, code)
    return sorted(CALM_CODES) + sorted(first.values())


@pytest.mark.browser
@pytest.mark.parametrize("codes", [pytest.param(one_of_each_kind(), id="one-of-each-kind"),
                                   pytest.param(sorted(CATALOGUE), id="every-code", marks=LONG)])
def test_the_purchase_page_shows_every_code(server: RunningServer, browser: Any, codes: list[str]) -> None:
    """Each code, loaded on its own page; `make test` loads one of each kind, `make test-long` all of them."""
    from playwright.sync_api import expect

    problems: list[str] = []
    page = browser.new_page(locale="zh-CN")
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    for code in codes:
        text = CATALOGUE[code]
        response = page.goto(f"{server.base}/buy/cpp-primer-5th?demo_error={code}")
        assert response is not None and response.status == 200
        # What the learner chose or already has is news, not a failure: a calm notice, not red.
        if code in CALM_CODES:
            expect(page.locator("#notice")).to_have_attribute("data-code", code)
            expect(page.locator("#notice-zh")).to_have_text(text.message_zh)
            expect(page.locator("#notice-en")).to_have_text(text.message_en)
            expect(page.locator("#error")).to_be_hidden()
            continue
        box = page.locator("#error")
        expect(box).to_be_visible()
        expect(box).to_have_attribute("data-code", code)
        expect(page.locator("#error-zh")).to_have_text(text.message_zh)
        expect(page.locator("#error-en")).to_have_text(text.message_en)
        hint = page.locator("#error-action")
        if text.action == "none":
            expect(hint).to_have_text("")
        else:
            expect(hint).to_contain_text(re.compile(r"[\u4e00-\u9fff].*[A-Za-z]"))
        if text.action == "retry_later":
            expect(hint).to_contain_text("(30 s)")
        # The page stays usable: the learner can still start an order.
        expect(page.locator("#pay")).to_be_visible()
    assert problems == []


def test_demo_errors_exist_only_in_sandbox_mode_and_only_for_catalogued_codes(server: RunningServer) -> None:
    page = requests.get(f"{server.base}/buy/cpp-primer-5th?demo_error=rate_limited", timeout=5).text
    assert 'data-demo-error="rate_limited"' in page
    page = requests.get(f"{server.base}/buy/cpp-primer-5th?demo_error=%3Cscript%3E", timeout=5).text
    assert "data-demo-error" not in page


def test_live_mode_ignores_demo_errors(shop) -> None:  # type: ignore[no-untyped-def]
    page = shop.get("/buy/cpp-primer-5th?demo_error=rate_limited").text
    assert "data-demo-error" not in page
