"""Logs: one JSON line per request and per billing event, with a request id, and never a secret."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from conftest import APIV3_KEY, Shop, pem_private

from operations.logs import JsonFormatter, NoQueryParameters, redact, redact_path, register_secrets

TOKEN = "metrics-token-that-is-secret-42"
EMAIL = "learner.private@example.com"


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"METRICS_TOKEN": TOKEN}


def pem_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM: a key leaked in pieces is still leaked."""
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def test_a_whole_purchase_logs_json_lines_with_request_ids_and_no_secret(shop: Shop, make_notification, caplog,
                                                                         capsys) -> None:
    caplog.set_level(logging.DEBUG)
    capsys.readouterr()
    order = shop.order(email=EMAIL)
    shop.sandbox.pay(order["out_trade_no"])
    view = shop.wait_for_status(order, "fulfilled")
    assert view["status"] == "fulfilled"
    note = make_notification(order, transaction_id=view["transaction_id"])  # WeChat re-sending the payment
    assert shop.notify(note).status_code == 204
    second = shop.order("rust-monthly", buyer_token=order["buyer_token"])
    shop.post(f"/api/v1/orders/{second['order_id']}/cancel", token=second["order_token"])
    assert shop.get("/metrics", token=TOKEN).status_code == 200
    assert shop.get("/metrics", token="a-wrong-token-that-is-long").status_code == 401

    config = shop.app.config
    license_key = view["license"]["key"]
    payload, signature = license_key.split("|")
    secrets = {
        "APIv3 key": APIV3_KEY.decode(),
        "session secret": config["SECRET_KEY"],
        "metrics token": TOKEN,
        "order token": order["order_token"],
        "second order token": second["order_token"],
        "buyer token": order["buyer_token"],
        "license": license_key,
        "license payload": payload,
        "license signature": signature,
        "notification signature": note.headers["Wechatpay-Signature"],
        "payer openid": note.transaction["payer"]["openid"],
        "learner e-mail": EMAIL,
        "code_url": order["code_url"],
    }
    for name, key in (("merchant key", shop.keys.merchant), ("license signing key", shop.keys.license)):
        for i, line in enumerate(pem_lines(pem_private(key))):
            if len(line) >= 40:
                secrets[f"{name} line {i}"] = line
    secrets["APIv3 key (base64)"] = base64.b64encode(APIV3_KEY).decode()

    written = capsys.readouterr().err
    formatter, handler_filter = JsonFormatter(), NoQueryParameters()
    formatted = "\n".join(formatter.format(r) for r in caplog.records if handler_filter.filter(r))
    assert len(caplog.records) > 10
    for name, value in secrets.items():
        assert value not in written, f"{name} appears in the log output"
        assert value not in formatted, f"{name} appears in a formatted log record"

    lines = [json.loads(line) for line in written.splitlines() if line.startswith("{")]
    requests_logged = [e for e in lines if e["logger"] == "lbpay.request"]
    assert {"/api/v1/orders", "/wechatpay/notify/transaction", "/metrics"} <= {e["path"] for e in requests_logged}
    for entry in requests_logged:
        assert {"time", "level", "message", "request_id", "method", "path", "status", "duration_ms"} <= set(entry)
    ids = [e["request_id"] for e in requests_logged]
    assert len(set(ids)) == len(ids)  # one line per request, each its own id

    # A billing event logged while serving a request carries that request's id.
    fulfilled = [e for e in lines if e["logger"] == "billing.payments" and "fulfilled" in e["message"]]
    assert fulfilled and all(e.get("request_id") in ids for e in fulfilled)


@pytest.mark.parametrize("text", [
    "Authorization: Bearer abcdefghijklmnop",
    "-----BEGIN " "PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ\n-----END PRIVATE KEY-----",
    'WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n0nc3",signature="c2lnbmF0dXJl",serial_no="1"',
    "order_token=Zm9vYmFyYmF6cXV4cXV1eA",
    "eyJpZCI6IjEyMzQ1Njc4LTEyMzQtMTIzNC0xMjM0LTEyMzQ1Njc4OWFiYyJ9|c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl",
    # The same in an access log line, its "|", "/" and "+" escaped by the client.
    '"GET /provider/licenses/eyJpZCI6IjEyMzQ1Njc4LTEyMzQtMTIzNC0xMjM0LTEyMzQ1Njc4OWFiYyJ9%7Cc2lnbmF0dXJlc2ln'
    'bmF0dXJl%2Fc2lnbmF0dXJlc2lnbmF0dXJl%2Bc2lnbmF0dXJlc2lnbmF0dXJl%3D%3D HTTP/1.1" 200 -',
])
def test_secret_shaped_text_is_redacted(text: str) -> None:
    cleaned = redact(text)
    for secret in ("abcdefghijklmnop", "MIIEvQ", "c2lnbmF0dXJl", "n0nc3", "Zm9vYmFy", "eyJpZCI6"):
        assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_a_registered_secret_is_redacted_wherever_it_appears() -> None:
    register_secrets(["short", "a-very-particular-secret-value"])
    assert redact("x=a-very-particular-secret-value;") == "x=[redacted];"
    assert redact("a short word") == "a short word"  # too short to be a secret worth hunting


def test_a_signed_document_in_a_path_is_redacted_and_ids_survive() -> None:
    key = "eyJpZCI6IjEyMzQ1Njc4LTEy/MzQtMTIzNC0xMjM0LTEyMzQ1Njc4OWFiYyJ9|c2lnbmF0dXJlc2lnbmF0dXJl+c2lnbmF0dXJl=="
    assert redact_path(f"/provider/licenses/{key}") == "/provider/licenses/[redacted]"
    escaped = key.replace("/", "%2F").replace("|", "%7C").replace("+", "%2B").replace("=", "%3D")
    assert redact_path(f"/provider/licences/{escaped}") == "/provider/licences/[redacted]"
    for path in ("/api/v1/orders/ord_fLYknbm8YgDwUAEFiE28Hw", "/provider/content/cpp-primer-5th/ch1/lesson.md",
                 "/api/v1/licenses/6f1c1f4e-3d43-4e43-9b1f-3c1f0b0e2a11/status"):
        assert redact_path(path) == path


def test_business_words_survive_redaction() -> None:
    text = "order ord_3f2a fulfilled via notification; out_trade_no LB20261126100000ABCDEF123456"
    assert redact(text) == text
