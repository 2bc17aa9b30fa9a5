"""The WSGI apps the benchmark serves with gunicorn: the sandbox as WeChat, our app, and a bare baseline."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from flask import Flask, jsonify, request

from workspace import Workspace

# What a status poll answers, in size and shape, so the baseline pays the same JSON encoding.
CONSTANT = {
    "order_id": "ord_0123456789abcdefghijkl", "status": "pending", "course_id": "cpp-primer-5th",
    "amount_fen": 9900, "currency": "CNY", "code_url": "weixin://wxpay/bizpayurl?pr=0123456789a",
    "created_at": "2026-11-26T10:00:00Z", "expires_at": "2026-11-26T10:30:00Z", "paid_at": None,
    "out_trade_no": "LB20261126100000ABCDEFGHIJKL", "transaction_id": None, "license": None,
    "error": None, "final": False, "poll_after_ms": 1500,
}


def sandbox() -> Flask:
    """The WeChat Pay simulator for the workspace in BENCH_WORKSPACE, delivering to BENCH_SHOP_URL."""
    from wechatpay.sandbox import create_sandbox_app

    workspace = Workspace(Path(os.environ["BENCH_WORKSPACE"]))
    return create_sandbox_app(workspace.sandbox_config(os.environ["BENCH_SHOP_URL"]))


def bare() -> Flask:
    """A Flask app with one endpoint that returns a constant JSON: the floor of any request."""
    app = Flask("bare")

    @app.get("/api/v1/orders/<order_id>")
    def constant(order_id: str) -> Any:
        return jsonify(CONSTANT)

    return app


class OwnTime:
    """WSGI middleware adding X-Bench-Own-Us / X-Bench-WeChat-Us: time in our code and in WeChat calls."""

    def __init__(self, app: Any, shop: Any) -> None:
        self.app = app
        self.local = threading.local()
        wechat = shop.wechat
        for name in ("create_native_order", "query_by_out_trade_no", "close_order"):
            setattr(wechat, name, self._timed(getattr(wechat, name)))

    def _timed(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.local.wechat = getattr(self.local, "wechat", 0.0) + time.perf_counter() - start
        return timed

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start = time.perf_counter()
        self.local.wechat = 0.0

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            total = time.perf_counter() - start
            wechat = self.local.wechat
            headers.append(("X-Bench-Own-Us", str(int((total - wechat) * 1e6))))
            headers.append(("X-Bench-WeChat-Us", str(int(wechat * 1e6))))
            return start_response(status, headers, exc_info)

        return self.app(environ, respond)


def shop() -> Flask:
    """Our app exactly as ``app:create_app()`` builds it, with the own-time headers added outside it."""
    from app import create_app

    app = create_app()
    app.wsgi_app = OwnTime(app.wsgi_app, app.extensions["lbpay.shop"])  # type: ignore[method-assign]
    return app


# --- the peer: what a creator writes in an afternoon with the wechatpayv3 SDK ----------------

SDK_SCHEMA = """
CREATE TABLE IF NOT EXISTS payment (out_trade_no TEXT PRIMARY KEY, amount_fen INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', transaction_id TEXT UNIQUE, paid_at TEXT);
CREATE TABLE IF NOT EXISTS license (out_trade_no TEXT PRIMARY KEY REFERENCES payment, license_key TEXT NOT NULL);
"""


def sdk_database(path: str) -> Any:
    """The peer's SQLite file, opened as ours is (WAL, synchronous NORMAL), with its two tables."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SDK_SCHEMA)
    return conn


def sdk() -> Flask:
    """The wechatpayv3-based handler: ``callback()`` verifies and decrypts, one transaction pays and licenses.

    It keeps no raw notification, no audit chain and no mail outbox: the comparison is generous to it.
    """
    import base64
    import json as json_module

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from wechatpayv3 import WeChatPay, WeChatPayType

    from workspace import APIV3_KEY, APPID, MCHID, PUBLIC_KEY_ID

    workspace = Workspace(Path(os.environ["BENCH_WORKSPACE"]))
    files = workspace.files
    pay = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=MCHID,
                    private_key=Path(files["merchant_key"]).read_text(), cert_serial_no="3775B6A4", appid=APPID,
                    apiv3_key=APIV3_KEY.decode(), public_key=Path(files["platform_public"]).read_text(),
                    public_key_id=PUBLIC_KEY_ID)
    license_key = serialization.load_pem_private_key(Path(files["license_key"]).read_bytes(), password=None)
    local = threading.local()
    lock = threading.Lock()  # one writer per process at a time, as sqlite3 users usually arrange
    app = Flask("sdk")

    def connection() -> Any:
        if not hasattr(local, "conn"):
            local.conn = sdk_database(os.environ["BENCH_SDK_DATABASE"])
        return local.conn

    @app.post("/wechatpay/notify/transaction")
    def notify() -> Any:
        result = pay.callback(request.headers, request.get_data())
        if not result or result.get("event_type") != "TRANSACTION.SUCCESS":
            return jsonify(code="FAIL", message="verification failed"), 401
        tx = result["resource"]
        payload = json_module.dumps({"id": tx["out_trade_no"], "courseId": "cpp-primer-5th",
                                     "expiresAt": "2099-01-01T00:00:00Z"}, separators=(",", ":")).encode()
        data = base64.b64encode(payload)
        signature = license_key.sign(data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
        text = data.decode() + "|" + base64.b64encode(signature).decode()
        conn = connection()
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = conn.execute("UPDATE payment SET status='paid', transaction_id=?, paid_at=datetime('now') "
                                       "WHERE out_trade_no=? AND status='pending' AND amount_fen=?",
                                       (tx["transaction_id"], tx["out_trade_no"], tx["amount"]["total"])).rowcount
                if changed:
                    conn.execute("INSERT INTO license (out_trade_no, license_key) VALUES (?, ?)",
                                 (tx["out_trade_no"], text))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return "", 204

    return app
