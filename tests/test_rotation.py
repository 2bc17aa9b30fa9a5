"""Rotating keys without stranding a learner: license signing keys, and the APIv3 key switch."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from conftest import SHOP_ORIGIN, LiveServer, Shop, command_line, live_config

import models
from app import create_app
from licensing import verify_license
from wechatpay.crypto import load_public_key
from settings import ConfigError

UTC = dt.timezone.utc
NEXT_APIV3_KEY = b"TheNewApiV3KeyAfterTheSwitch0042"


@pytest.fixture
def shop_settings() -> dict[str, Any]:
    return {"WECHATPAY_APIV3_KEY_NEXT": NEXT_APIV3_KEY.decode()}


def lbpay(shop: Shop, tmp_path: Path, *args: str) -> Result:
    """Run the command line with the shop's own live settings: its database, keys folder and mounted license key."""
    settings = live_config(tmp_path, shop.keys, shop.sandbox.url)
    return command_line(Path(settings.pop("INSTANCE_PATH")), **settings)(*args)


def buy(url: str, sandbox: Any, session: Any, course: str = "cpp-primer-5th") -> dict[str, Any]:
    order = session.post(url + "/api/v1/orders", json={"course_id": course}, timeout=15).json()
    sandbox.pay(order["out_trade_no"])
    for _ in range(200):
        view = session.get(f"{url}/api/v1/orders/{order['order_id']}",
                           headers={"Authorization": f"Bearer {order['order_token']}"}, timeout=15).json()
        if view["status"] == "fulfilled":
            return view
        import time

        time.sleep(0.05)
    raise AssertionError(f"order never fulfilled: {view}")


def restart(shop: Shop, tmp_path: Path) -> LiveServer:
    """Start the app again on the same files, as gunicorn does after HUP or a deploy."""
    app = create_app({**live_config(tmp_path, shop.keys, shop.sandbox.url), "CLOCK": shop.clock})
    server = LiveServer(app)
    shop.sandbox.config.notify_origin_map[SHOP_ORIGIN] = server.url
    return server


def published_keys(url: str, session: Any) -> list[dict[str, Any]]:
    return session.get(url + "/api/v1/license-keys", timeout=5).json()["keys"]


def test_after_rotation_new_licenses_carry_the_new_kid_and_old_ones_still_verify(shop: Shop,
                                                                                 tmp_path: Path) -> None:
    first = buy(shop.url, shop.sandbox, shop.session)
    first_kid = shop.app.extensions["lbpay.shop"].license_keys.active.kid

    rotated = lbpay(shop, tmp_path, "keys", "rotate")
    assert rotated.exit_code == 0, rotated.stderr
    assert "kill -HUP" in rotated.stdout
    # The running process signs with the old key until it reloads.
    assert published_keys(shop.url, shop.session)[0]["kid"] == first_kid

    server = restart(shop, tmp_path)
    try:
        second = buy(server.url, shop.sandbox, shop.session, "rust-monthly")
        keys = published_keys(server.url, shop.session)
    finally:
        server.stop()
    assert [k["active"] for k in keys].count(True) == 1
    active = next(k for k in keys if k["active"])
    assert active["kid"] != first_kid and {k["kid"] for k in keys} == {first_kid, active["kid"]}
    public = {k["kid"]: load_public_key(k["public_key_pem"].encode()) for k in keys}
    now = dt.datetime.now(UTC)
    with models.db.connection_context():
        kids = {lic.order.public_id: lic.kid for lic in models.License.select()}
    assert kids == {first["order_id"]: first_kid, second["order_id"]: active["kid"]}
    for view in (first, second):
        assert verify_license(view["license"]["key"], public, now).status == "valid"

    listing = lbpay(shop, tmp_path, "keys", "list").stdout.splitlines()
    assert f"{active['kid']}\tactive\t1 licenses" in listing
    assert f"{first_kid}\tretired\t1 licenses" in listing
    with models.db.connection_context():
        assert models.AuditEvent.select().where(models.AuditEvent.action == "license_key.rotated").count() == 1


def test_rotated_keys_keep_only_one_private_key_and_public_halves(shop: Shop, tmp_path: Path) -> None:
    for _ in range(2):
        assert lbpay(shop, tmp_path, "keys", "rotate").exit_code == 0
    folder = tmp_path / "instance" / "license-keys"
    assert (folder / "active.pem").stat().st_mode & 0o777 == 0o600
    retired = sorted((folder / "retired").glob("*.pem"))
    assert len(retired) == 2
    for path in retired:
        assert b"PRIVATE" not in path.read_bytes()
    assert not list(folder.glob(".next-*"))
    server = restart(shop, tmp_path)
    try:
        keys = published_keys(server.url, shop.session)
    finally:
        server.stop()
    assert len(keys) == 3 and [k["active"] for k in keys] == [True, False, False]
    # No private key in the database.
    with models.db.connection_context():
        for event in models.AuditEvent.select():
            assert "PRIVATE" not in event.detail


def test_startup_refuses_a_rotated_key_readable_by_others(shop: Shop, tmp_path: Path) -> None:
    assert lbpay(shop, tmp_path, "keys", "rotate").exit_code == 0
    active = tmp_path / "instance" / "license-keys" / "active.pem"
    active.chmod(0o644)
    with pytest.raises(ConfigError) as refused:
        create_app(live_config(tmp_path, shop.keys, shop.sandbox.url))
    assert "LBPAY_LICENSE_KEYS_DIR" in str(refused.value) and f"chmod 600 {active}" in str(refused.value)


def test_during_an_apiv3_key_switch_both_keys_decrypt(shop: Shop, make_notification) -> None:
    old, new = shop.order(), shop.order()
    assert shop.notify(make_notification(old)).status_code == 204
    assert shop.notify(make_notification(new, apiv3_key=NEXT_APIV3_KEY)).status_code == 204
    assert shop.poll(old)["status"] == shop.poll(new)["status"] == "fulfilled"
    stranger = shop.order()
    assert shop.notify(make_notification(stranger, apiv3_key=b"x" * 32)).status_code == 500
