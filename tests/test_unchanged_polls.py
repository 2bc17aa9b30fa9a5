"""A status poll that holds its order's current answer gets its 304 from web/unchanged.py, before Flask:
the same answer the app gives, headers included; every other request still goes to the app."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import MODELS_BINDING, Shop
from flask import Flask
from test_admin import paid_order
from werkzeug.test import Client

from web.unchanged import UnchangedPolls


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths Flask dispatched a request for (a spy on Flask's dispatch; nothing replaced)."""
    seen: list[str] = []
    flasks = Flask.full_dispatch_request

    def spy(self: Flask) -> Any:
        from flask import request

        seen.append(request.path)
        return flasks(self)

    monkeypatch.setattr(Flask, "full_dispatch_request", spy)
    return seen


def _poll(shop: Shop, order: dict[str, Any], tag: str | None, token: str | None = None) -> Any:
    headers = {"X-Request-Id": "poll-check-0001"}
    if tag:
        headers["If-None-Match"] = tag
    return shop.get(f"/api/v1/orders/{order['order_id']}", token=token or order["order_token"], headers=headers)


def test_a_poll_holding_its_answer_gets_the_apps_own_304_without_flask(shop: Shop, dispatched: list[str]) -> None:
    order = paid_order(shop)
    tag = _poll(shop, order, None).headers["ETag"]
    assert isinstance(shop.app.wsgi_app, UnchangedPolls)
    dispatched.clear()

    ours = _poll(shop, order, tag)
    assert (ours.status_code, ours.content, dispatched) == (304, b"", [])

    # The same request to the app without this layer: Flask answers it, with the same headers.
    path = f"/api/v1/orders/{order['order_id']}"
    with MODELS_BINDING.request():
        apps = Client(shop.app.wsgi_app.app).get(path, headers={
            "Authorization": f"Bearer {order['order_token']}", "If-None-Match": tag, "X-Request-Id": "poll-check-0001"})
    assert (apps.status_code, dispatched) == (304, [path])
    assert [(k, v) for k, v in ours.headers.items() if k in apps.headers] == list(apps.headers.items())


def test_every_other_poll_goes_to_the_app(shop: Shop, dispatched: list[str]) -> None:
    order = paid_order(shop)
    tag = _poll(shop, order, None).headers["ETag"]
    pending = shop.order()
    path = f"/api/v1/orders/{order['order_id']}"
    dispatched.clear()

    stale = _poll(shop, order, '"an-answer-it-no-longer-gives"')
    assert stale.status_code == 200 and stale.headers["ETag"] == tag and stale.json()["status"] == "fulfilled"
    wrong_token = _poll(shop, order, tag, token=pending["order_token"])
    assert wrong_token.status_code == 404 and wrong_token.json()["error"]["code"] == "order_not_found"
    still_pending = _poll(shop, pending, tag)
    assert still_pending.status_code == 200 and "ETag" not in still_pending.headers
    assert dispatched == [path, path, f"/api/v1/orders/{pending['order_id']}"]

    # With DEBUG request logs the app logs every poll, so it answers them all.
    requests_log = logging.getLogger("lbpay.request")
    level = requests_log.level
    requests_log.setLevel(logging.DEBUG)
    try:
        assert _poll(shop, order, tag).status_code == 304
    finally:
        requests_log.setLevel(level)
    assert dispatched[-1] == path
