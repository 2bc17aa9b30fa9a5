"""The WSGI apps the benchmark serves with gunicorn: the sandbox as WeChat, our app, and a bare baseline."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from flask import Flask, jsonify

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
        # The client itself, under the counting wrapper: what the wrapper does is our own time.
        wechat = getattr(shop.wechat, "_client", shop.wechat)
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
