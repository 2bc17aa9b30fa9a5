"""Live-mode Alipay settings (LBPAY_ALIPAY_*), each payment method switched on or off, and check-config naming them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from alipay_helpers import APP_ID, SELLER_ID, AlipayKeys, cert_pem, pem_private, pem_public
from conftest import Keys, command_line, live_config
from cryptography.hazmat.primitives import serialization

from alipay.keys import CertMode, PublicKeyMode
from app import create_app
from billing.alipay_method import checked_method, offered_methods
from billing.errors import BillingError
from settings import ConfigError


@pytest.fixture(scope="module")
def alipay_keys() -> AlipayKeys:
    return AlipayKeys.make()


def secret(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


def alipay_public_key_mode(tmp_path: Path, keys: AlipayKeys) -> dict[str, str]:
    return {"ALIPAY_APP_ID": APP_ID, "ALIPAY_SELLER_ID": SELLER_ID,
            "ALIPAY_APP_PRIVATE_KEY_FILE": secret(tmp_path / "app_private_key.pem", pem_private(keys.app)),
            "ALIPAY_PUBLIC_KEY_FILE": secret(tmp_path / "alipay_public_key.pem", pem_public(keys.alipay.public_key()))}


@pytest.fixture
def config(tmp_path: Path, keys: Keys) -> dict[str, Any]:
    return live_config(tmp_path, keys, "https://127.0.0.1:9")


def test_live_mode_takes_alipay_in_public_key_mode(config: dict[str, Any], tmp_path: Path,
                                                  alipay_keys: AlipayKeys) -> None:
    shop = create_app({**config, **alipay_public_key_mode(tmp_path, alipay_keys)}).extensions["lbpay.shop"]
    assert shop.alipay is not None and shop.alipay.app_id == APP_ID and shop.alipay.seller_id == SELLER_ID
    assert isinstance(shop.alipay.keys, PublicKeyMode)
    assert shop.alipay.client.gateway == "https://openapi.alipay.com/gateway.do"
    assert shop.alipay.client.notify_url == config["PUBLIC_BASE_URL"] + "/alipay/notify/trade"
    assert offered_methods(shop) == ("wechat", "alipay")


def test_live_mode_without_alipay_settings_offers_wechat_only(config: dict[str, Any]) -> None:
    shop = create_app(config).extensions["lbpay.shop"]
    assert shop.alipay is None and offered_methods(shop) == ("wechat",)


def test_live_mode_takes_alipay_in_certificate_mode_and_keys_given_as_alipays_bare_base64(
        config: dict[str, Any], tmp_path: Path, alipay_keys: AlipayKeys) -> None:
    # Alipay's key tool hands the private key out as one line of base64, no PEM armour.
    bare = base64.b64encode(alipay_keys.app.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    settings = {"ALIPAY_APP_ID": APP_ID, "ALIPAY_SELLER_ID": SELLER_ID,
                "ALIPAY_APP_PRIVATE_KEY_FILE": secret(tmp_path / "app_private_key.txt", bare + b"\n"),
                "ALIPAY_APP_CERT_FILE": secret(tmp_path / "appCertPublicKey.crt", cert_pem(alipay_keys.app_cert).encode()),
                "ALIPAY_CERT_FILE": secret(tmp_path / "alipayCertPublicKey_RSA2.crt",
                                           alipay_keys.alipay_cert_chain_pem.encode()),
                "ALIPAY_ROOT_CERT_FILE": secret(tmp_path / "alipayRootCert.crt", alipay_keys.root_pem.encode()),
                "ALIPAY_GATEWAY": "https://openapi-sandbox.dl.alipaydev.com/gateway.do"}
    shop = create_app({**config, **settings}).extensions["lbpay.shop"]
    assert isinstance(shop.alipay.keys, CertMode)
    assert shop.alipay.client.gateway == settings["ALIPAY_GATEWAY"]


@pytest.mark.parametrize("change, named, words", [
    ({"ALIPAY_SELLER_ID": None}, "LBPAY_ALIPAY_SELLER_ID", "required"),
    ({"ALIPAY_SELLER_ID": "1234"}, "LBPAY_ALIPAY_SELLER_ID", "2088"),
    ({"ALIPAY_APP_ID": "wx12"}, "LBPAY_ALIPAY_APP_ID", "digits"),
    ({"ALIPAY_APP_ID": None}, "LBPAY_ALIPAY_APP_ID", "required"),
    ({"ALIPAY_APP_PRIVATE_KEY_FILE": None}, "LBPAY_ALIPAY_APP_PRIVATE_KEY_FILE", "required"),
    ({"ALIPAY_APP_PRIVATE_KEY_FILE": "/nonexistent/app.pem"}, "LBPAY_ALIPAY_APP_PRIVATE_KEY_FILE", "cannot read"),
    ({"ALIPAY_PUBLIC_KEY_FILE": None}, "LBPAY_ALIPAY_PUBLIC_KEY_FILE", "or the three certificate files"),
    ({"ALIPAY_CERT_FILE": "/x.crt"}, "LBPAY_ALIPAY_PUBLIC_KEY_FILE", "not both"),
    ({"ALIPAY_GATEWAY": "http://openapi.alipay.com/gateway.do"}, "LBPAY_ALIPAY_GATEWAY", "https://"),
    ({"ALIPAY_ENABLED": "maybe"}, "LBPAY_ALIPAY_ENABLED", "on or off"),
])
def test_a_bad_alipay_setting_stops_start_up_and_names_itself(
        config: dict[str, Any], tmp_path: Path, alipay_keys: AlipayKeys, change: dict[str, str | None], named: str,
        words: str) -> None:
    settings = {**config, **alipay_public_key_mode(tmp_path, alipay_keys), **change}
    with pytest.raises(ConfigError) as info:
        create_app({k: v for k, v in settings.items() if v is not None})
    assert any(p.name == named and words in str(p) for p in info.value.problems), info.value.report()


def test_an_app_private_key_readable_by_others_or_not_a_key_is_refused(config: dict[str, Any], tmp_path: Path,
                                                                      alipay_keys: AlipayKeys) -> None:
    settings = {**config, **alipay_public_key_mode(tmp_path, alipay_keys)}
    Path(settings["ALIPAY_APP_PRIVATE_KEY_FILE"]).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        create_app(settings)
    Path(settings["ALIPAY_APP_PRIVATE_KEY_FILE"]).write_text("not a key\n")
    Path(settings["ALIPAY_APP_PRIVATE_KEY_FILE"]).chmod(0o600)
    with pytest.raises(ConfigError, match="LBPAY_ALIPAY_APP_PRIVATE_KEY_FILE"):
        create_app(settings)


def test_each_method_can_be_switched_off(config: dict[str, Any], tmp_path: Path, alipay_keys: AlipayKeys) -> None:
    both = {**config, **alipay_public_key_mode(tmp_path, alipay_keys)}
    alipay_off = create_app({**both, "ALIPAY_ENABLED": "false"}).extensions["lbpay.shop"]
    assert alipay_off.alipay is None and offered_methods(alipay_off) == ("wechat",)
    wechat_off = create_app({**both, "WECHATPAY_ENABLED": "false"}).extensions["lbpay.shop"]
    assert offered_methods(wechat_off) == ("alipay",)
    assert checked_method(wechat_off, None) == "alipay"  # no method named: the one that is on
    with pytest.raises(BillingError) as refused:
        checked_method(wechat_off, "wechat")
    assert refused.value.code == "payment_method_unavailable"
    with pytest.raises(ConfigError, match="every payment method is off"):
        create_app({**config, "WECHATPAY_ENABLED": "false"})


def test_sandbox_mode_switches_alipay_off_too(tmp_path: Path) -> None:
    shop = create_app({"WECHATPAY_MODE": "sandbox", "INSTANCE_PATH": str(tmp_path / "instance"), "SCHEDULER": "off",
                       "ALIPAY_ENABLED": "off"}).extensions["lbpay.shop"]
    assert shop.alipay is None and offered_methods(shop) == ("wechat",)


def test_check_config_lists_what_each_method_needs(tmp_path: Path) -> None:
    on = command_line(tmp_path / "a" / "instance")("check-config")
    assert on.exit_code == 0, on.output
    assert "wechat: on (sandbox" in on.stdout and "alipay: on (sandbox" in on.stdout
    off = command_line(tmp_path / "b" / "instance", ALIPAY_ENABLED="false")("check-config")
    assert off.exit_code == 0, off.output
    assert "alipay: off" in off.stdout
    for name in ("LBPAY_ALIPAY_APP_ID", "LBPAY_ALIPAY_SELLER_ID", "LBPAY_ALIPAY_APP_PRIVATE_KEY_FILE",
                 "LBPAY_ALIPAY_PUBLIC_KEY_FILE", "LBPAY_ALIPAY_CERT_FILE"):
        assert name in off.stdout, off.stdout
    for name in ("LBPAY_WECHATPAY_MCHID", "LBPAY_WECHATPAY_MERCHANT_KEY_FILE"):
        assert name in on.stdout, on.stdout


def test_check_config_names_live_alipay_and_never_prints_its_private_key(
        config: dict[str, Any], tmp_path: Path, alipay_keys: AlipayKeys) -> None:
    settings = {**config, **alipay_public_key_mode(tmp_path, alipay_keys)}
    done = command_line(tmp_path / "instance", **{k: v for k, v in settings.items() if k != "INSTANCE_PATH"})(
        "check-config")
    assert done.exit_code == 0, done.output
    assert f"alipay: on (app {APP_ID}, seller {SELLER_ID}, public-key mode" in done.stdout
    assert "wechat: on (merchant " in done.stdout
    assert pem_private(alipay_keys.app).decode().splitlines()[1] not in done.output


def test_a_shop_with_wechat_off_sells_through_alipay_on_the_page_and_the_api(tmp_path: Path) -> None:
    import uuid

    import models
    import requests
    from billing.courses import save_course
    from conftest import database_url_for
    from servers import free_port
    from test_alipay_billing import PortServer

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app({"SCHEDULER": "off", "INSTANCE_PATH": str(tmp_path / "instance"), "WECHATPAY_MODE": "sandbox",
                      "DATABASE_URL": database_url_for(tmp_path), "PUBLIC_BASE_URL": url,
                      "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex, "WECHATPAY_ENABLED": "off"})
    with models.db.connection_context():
        models.create_tables()
        save_course(app.extensions["lbpay.shop"], course_id="cpp-primer-5th", title="C++ Primer 第5版", price_fen=9900)
    server = PortServer(app, port)
    try:
        page = requests.get(url + "/buy/cpp-primer-5th", timeout=30).text
        assert 'id="pay-alipay"' in page and 'id="pay"' not in page
        courses = requests.get(url + "/api/v1/courses", timeout=30).json()
        assert courses["payment_methods"] == ["alipay"]
        placed = requests.post(url + "/api/v1/orders", json={"course_id": "cpp-primer-5th"}, timeout=30)
        assert placed.status_code == 201 and placed.json()["method"] == "alipay", placed.text
        refused = requests.post(url + "/api/v1/orders", json={"course_id": "cpp-primer-5th", "method": "wechat"},
                                timeout=30)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "payment_method_unavailable"
    finally:
        app.extensions["lbpay.alipay_sandbox"].extensions["alipay_sandbox"].stop()
        server.stop()
