"""The whole purchase over real HTTP: our app in live mode, the WeChat Pay sandbox over TLS."""

from __future__ import annotations

import base64
import datetime as dt
import json

from conftest import PUBLIC_KEY_ID, Shop, db_counts
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

import models
from licensing import key_id, verify_license
from wechatpay.crypto import load_public_key

UTC = dt.timezone.utc


def license_keys(shop: Shop) -> dict:
    keys = shop.get("/api/v1/license-keys").json()["keys"]
    return {k["kid"]: load_public_key(k["public_key_pem"].encode()) for k in keys}


def test_a_learner_buys_pays_and_receives_a_license_that_verifies(shop: Shop) -> None:
    courses = shop.get("/api/v1/courses").json()["courses"]
    assert {"id": "cpp-primer-5th", "title": "C++ Primer 第5版", "price_fen": 9900, "currency": "CNY",
            "plan": "one_time", "period_days": None} in courses

    order = shop.order(email="learner@example.com")
    assert order["status"] == "pending" and order["amount_fen"] == 9900
    assert order["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert order["qr_svg"].startswith("<svg") and order["order_id"].startswith("ord_")
    assert len(order["order_token"]) >= 43 and order["buyer_token"].startswith("bt_")
    assert order["license"] is None and order["poll_after_ms"] > 0

    shop.sandbox.pay(order["out_trade_no"])
    view = shop.wait_for_status(order, "fulfilled")
    assert view["status"] == "fulfilled", view
    assert view["transaction_id"].startswith("42")
    assert view["final"] is True and view["error"] is None

    check = verify_license(view["license"]["key"], license_keys(shop), dt.datetime.now(UTC),
                           expected_course="cpp-primer-5th")
    assert check.status == "valid", check
    assert check.payload["orderId"] == order["order_id"]
    assert check.payload["id"] == view["license"]["id"]
    assert check.payload["plan"] == "one_time"

    # WeChat saw our signed calls (create), and its notification reached us once.
    paths = [r["path"] for r in shop.sandbox.requests_log()]
    assert any(p == "/v3/pay/transactions/native" for p in paths)
    delivered = [d for d in shop.sandbox.deliveries() if d.get("status") == 204]
    assert len(delivered) == 1


def test_the_license_is_signed_by_the_key_the_api_publishes(shop: Shop) -> None:
    keys = shop.get("/api/v1/license-keys").json()["keys"]
    assert len(keys) == 1 and keys[0]["active"] is True
    assert keys[0]["algorithm"] == "RSA-PKCS1v15-SHA256"
    ours = shop.keys.license.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert keys[0]["public_key_pem"].strip() == ours.strip()
    assert keys[0]["kid"] == key_id(shop.keys.license.public_key())

    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    key = shop.wait_for_status(order, "fulfilled")["license"]["key"]
    data, signature = key.split("|")
    published = load_public_key(keys[0]["public_key_pem"].encode())
    # The published key itself, not our verifier, checks the signature: it raises when they disagree.
    published.verify(base64.b64decode(signature, validate=True), data.encode("ascii"), padding.PKCS1v15(),
                     hashes.SHA256())
    assert json.loads(base64.b64decode(data))["kid"] == keys[0]["kid"]


def test_a_poll_with_another_orders_token_gets_the_same_404_as_an_unknown_order(shop: Shop) -> None:
    a, b = shop.order(), shop.order()
    wrong = shop.get(f"/api/v1/orders/{a['order_id']}", token=b["order_token"])
    missing = shop.get("/api/v1/orders/ord_doesnotexist", token=a["order_token"])
    anonymous = shop.get(f"/api/v1/orders/{a['order_id']}")
    for response in (wrong, missing, anonymous):
        assert response.status_code == 404
        assert response.json() == missing.json()
        assert response.json()["error"]["code"] == "order_not_found"


def test_an_order_with_a_buyer_token_belongs_to_that_buyer(shop: Shop) -> None:
    first = shop.order()
    second = shop.order(buyer_token=first["buyer_token"])
    assert second["buyer_token"] == first["buyer_token"]
    with models.db.connection_context():
        buyers = {o.buyer_id for o in models.Order.select()}
    assert len(buyers) == 1


def test_cancelling_closes_the_order_here_and_leaves_the_early_close_at_wechat_to_the_job(shop: Shop) -> None:
    order = shop.order()
    response = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "closed"
    assert response.json()["error"]["code"] == "payment_cancelled"
    # WeChat advises closing no sooner than 5 minutes after creation: the reconcile job does it then
    # (test_wechat_edges.py); a payment in between is a late payment, flagged.
    state = shop.sandbox.control("GET", f"orders/{order['out_trade_no']}").json()
    assert state["trade_state"] == "NOTPAY"
    # Cancelling again changes nothing and still answers.
    again = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])
    assert again.status_code == 200 and again.json()["status"] == "closed"


def test_a_paid_order_cannot_be_cancelled(shop: Shop) -> None:
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    shop.wait_for_status(order, "fulfilled")
    response = shop.post(f"/api/v1/orders/{order['order_id']}/cancel", token=order["order_token"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "order_already_paid"
    assert shop.poll(order)["status"] == "fulfilled"


def test_every_order_notification_and_license_leaves_a_whole_audit_chain(shop: Shop) -> None:
    from billing.audit import verify_chain

    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    shop.wait_for_status(order, "fulfilled")
    with models.db.connection_context():
        actions = [e.action for e in models.AuditEvent.select().order_by(models.AuditEvent.id)]
        whole, count, bad = verify_chain()
    assert {"order.created", "order.wechat_created", "order.paid", "license.issued"} <= set(actions)
    assert whole and bad is None and count == len(actions)
    assert db_counts()["licenses"] == 1


def test_the_notification_uses_the_public_key_id_we_configured(shop: Shop) -> None:
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    shop.wait_for_status(order, "fulfilled")
    with models.db.connection_context():
        note = models.Notification.get(models.Notification.result == "fulfilled")
    assert PUBLIC_KEY_ID in note.headers


def test_the_extensions_own_check_in_node_accepts_the_license_bought_end_to_end(shop: Shop, tmp_path) -> None:
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    assert node, "node is needed to prove the extension accepts our licenses"
    order = shop.order()
    shop.sandbox.pay(order["out_trade_no"])
    view = shop.wait_for_status(order, "fulfilled")
    license_file, key_file = tmp_path / "license.txt", tmp_path / "public.pem"
    license_file.write_text(view["license"]["key"])
    key_file.write_text(shop.get("/api/v1/license-keys").json()["keys"][0]["public_key_pem"])
    script = Path(__file__).parent / "node" / "verify_license.mjs"
    result = subprocess.run([node, str(script), str(license_file), str(key_file)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["valid"] is True and verdict["expired"] is False
    assert verdict["payload"]["courseId"] == "cpp-primer-5th"
    assert verdict["payload"]["contentPermissions"] == ["all_chapters"]
