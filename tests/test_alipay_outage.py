"""When Alipay is down, the learner who chose Alipay reads "支付宝 / Alipay", never WeChat Pay: API, page and kit.

The kit's words are the catalogue's (`make contract`; tests/test_vscode_kit.py checks every code).
"""

from __future__ import annotations

import re

import requests
from test_alipay_billing import AlipayShop, next_address, shop_fixtures

from billing import CATALOGUE


shop, _calm = shop_fixtures("alipay_outage_shop")


def alipay_down(shop: AlipayShop) -> None:
    # Every attempt the client makes (three) meets 系统繁忙.
    shop.control("POST", "faults", {"gateway": {"alipay.trade.precreate": ["unavailable"] * 3}})


def says_alipay(zh: str, en: str) -> bool:
    return "支付宝" in zh and "微信" not in zh and "Alipay" in en and "WeChat" not in en


def test_the_catalogue_has_alipay_words_for_an_outage_and_a_setup_error() -> None:
    for code in ("alipay_unavailable", "alipay_setup_error"):
        text = CATALOGUE[code]
        assert text.status == 503 and says_alipay(text.message_zh, text.message_en), code
    assert CATALOGUE["alipay_unavailable"].action == CATALOGUE["wechat_unavailable"].action == "retry_later"


def test_the_api_says_alipay_is_down_when_alipay_is_down(shop: AlipayShop) -> None:
    alipay_down(shop)
    answer = shop.order(method="alipay")
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "alipay_unavailable" and says_alipay(error["message_zh"], error["message_en"])
    assert answer.headers.get("Retry-After")


def test_a_wechat_order_during_an_alipay_outage_is_unaffected(shop: AlipayShop) -> None:
    alipay_down(shop)
    assert shop.order().status_code == 201


def test_the_purchase_page_without_javascript_says_alipay_is_down(shop: AlipayShop) -> None:
    alipay_down(shop)
    session = requests.Session()
    page = session.get(shop.url + "/buy/cpp-primer-5th", timeout=30, headers={"X-Forwarded-For": next_address()})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    placed = session.post(shop.url + "/buy/cpp-primer-5th", data={"csrf_token": token, "method": "alipay"},
                          timeout=30, headers={"X-Forwarded-For": next_address()})
    text = CATALOGUE["alipay_unavailable"]
    assert text.message_zh in placed.text and text.message_en in placed.text
    assert CATALOGUE["wechat_unavailable"].message_zh not in placed.text


def test_metrics_count_alipay_calls_apart_from_wechats(shop: AlipayShop) -> None:
    from conftest import MODELS_BINDING
    from test_ops import sample

    import models
    from operations.metrics import flush_calls, render_metrics

    assert shop.order(method="alipay").status_code == 201
    assert shop.order().status_code == 201
    alipay_down(shop)
    assert shop.order(method="alipay").status_code == 503
    with MODELS_BINDING.command(), models.db.connection_context():
        flush_calls(shop.shop)
        text = render_metrics(shop.shop.now())
    assert (sample(text, "lbpay_alipay_api_calls_total", call="create_native_order", outcome="ok") or 0) >= 1
    assert (sample(text, "lbpay_alipay_api_calls_total", call="create_native_order", outcome="api_error_5xx") or 0) >= 1
    assert (sample(text, "lbpay_alipay_api_seconds_count", call="create_native_order", outcome="ok") or 0) >= 1
    assert (sample(text, "lbpay_wechat_api_calls_total", endpoint="create_native_order", outcome="ok") or 0) >= 1
    assert "alipay" not in "".join(line for line in text.splitlines() if line.startswith("lbpay_wechat_api"))
    assert (sample(text, "lbpay_alipay_failing_since_seconds") or 0) > 0
    assert sample(text, "lbpay_wechat_failing_since_seconds") == 0  # Alipay's outage is not WeChat's
