"""A final order's poll answer carries an ETag; sent back, an unchanged order is a bodiless 304,
and a refund (or a revoke) changes the tag, so the client gets the new answer."""

from __future__ import annotations

from conftest import Shop
from test_admin import Console, console, paid_order  # noqa: F401  (the console fixture)
from test_refunds import refund, wait_for_refund


def poll(shop: Shop, order: dict, tag: str | None = None) -> tuple[int, str | None, bytes]:
    headers = {"If-None-Match": tag} if tag else {}
    r = shop.get(f"/api/v1/orders/{order['order_id']}", token=order["order_token"], headers=headers)
    return r.status_code, r.headers.get("ETag"), r.content


def test_a_fulfilled_order_is_answered_304_until_a_refund_changes_it(console: Console) -> None:
    shop = console.shop
    pending = shop.order()
    status, tag, _ = poll(shop, pending)
    assert status == 200 and tag is None  # still changing: no tag to hold on to

    order = paid_order(shop)
    status, tag, body = poll(shop, order)
    assert status == 200 and tag and b'"state":"active"' in body
    status, again, body = poll(shop, order, tag)
    assert (status, again, body) == (304, tag, b"")
    assert poll(shop, order, '"something-else"')[0] == 200

    # Someone else's token gets no 304 for the right tag: the lookup refuses first.
    r = shop.get(f"/api/v1/orders/{order['order_id']}", token=pending["order_token"], headers={"If-None-Match": tag})
    assert r.status_code == 404

    assert refund(console, order, "99.00").status_code == 303
    wait_for_refund(order, "SUCCESS")
    status, new_tag, body = poll(shop, order, tag)
    assert status == 200 and new_tag and new_tag != tag
    assert b'"status":"refunded"' in body and b'"state":"revoked"' in body
    assert poll(shop, order, new_tag)[0] == 304
