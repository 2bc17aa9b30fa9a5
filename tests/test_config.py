"""Start-up refuses a broken configuration, naming the setting to fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import Keys, live_config
from flask import Flask

from app import create_app
from licensing import key_id, load_signing_key
from settings import ConfigError


@pytest.fixture
def config(tmp_path: Path, keys: Keys) -> dict:
    return live_config(tmp_path, keys, "https://127.0.0.1:9")


@pytest.mark.parametrize("setting, value, words", [
    ("WECHATPAY_APIV3_KEY", "too-short", "exactly 32 bytes"),
    ("WECHATPAY_APIV3_KEY", None, "required"),
    ("WECHATPAY_MCHID", None, "required"),
    ("WECHATPAY_MCHID", "abc", "digits"),
    ("WECHATPAY_APPID", None, "required"),
    ("WECHATPAY_MERCHANT_SERIAL", None, "required"),
    ("WECHATPAY_MERCHANT_KEY_FILE", "/nonexistent/apiclient_key.pem", "cannot read"),
    ("WECHATPAY_API_BASE", "http://api.mch.weixin.qq.com", "https://"),
    ("PUBLIC_BASE_URL", "http://shop.example.com", "https://"),
    ("PUBLIC_BASE_URL", None, "required"),
    ("LICENSE_KEY_FILE", "/nonexistent/license.pem", "LBPAY_LICENSE_KEY_FILE"),
    ("LICENSE_KEY_FILE", None, "required"),
    ("SECRET_KEY", None, "required"),
    ("WECHATPAY_MODE", "production", "sandbox or live"),
    ("ORDER_TTL_MINUTES", "soon", "whole number"),
    ("DATABASE_URL", "mysql://x", "sqlite"),
    ("WECHATPAY_PUBLIC_KEY_ID", None, "both"),
])
def test_a_bad_setting_stops_start_up_and_names_itself(config: dict, setting: str, value, words: str) -> None:
    config[setting] = value
    with pytest.raises(ConfigError) as info:
        create_app(config)
    message = str(info.value)
    assert words in message
    assert "LBPAY_" in message


def test_a_merchant_key_readable_by_others_is_refused_with_the_fix(config: dict) -> None:
    os.chmod(config["WECHATPAY_MERCHANT_KEY_FILE"], 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        create_app(config)


def test_a_license_key_readable_by_others_is_refused_with_the_fix(config: dict) -> None:
    os.chmod(config["LICENSE_KEY_FILE"], 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        create_app(config)


def test_a_garbage_merchant_key_is_refused(config: dict) -> None:
    Path(config["WECHATPAY_MERCHANT_KEY_FILE"]).write_text("-----BEGIN " "PRIVATE KEY-----\nnope\n")
    with pytest.raises(ConfigError, match="WECHATPAY_MERCHANT_KEY_FILE"):
        create_app(config)


def test_secrets_can_come_from_files(config: dict, tmp_path: Path) -> None:
    key_file = tmp_path / "apiv3"
    key_file.write_text(config.pop("WECHATPAY_APIV3_KEY") + "\n")
    key_file.chmod(0o600)
    config["WECHATPAY_APIV3_KEY_FILE"] = str(key_file)
    app = create_app(config)
    assert len(app.extensions["lbpay.shop"].apiv3_keys[0]) == 32


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_secret_file_others_can_read_is_refused_with_the_fix(config: dict, tmp_path: Path, mode: int) -> None:
    """THREATS #53: every *_FILE secret follows the 0600 rule of the PEM files, not only the PEMs."""
    key_file = tmp_path / "apiv3"
    key_file.write_text(config.pop("WECHATPAY_APIV3_KEY") + "\n")
    key_file.chmod(mode)
    config["WECHATPAY_APIV3_KEY_FILE"] = str(key_file)
    with pytest.raises(ConfigError, match=f"LBPAY_WECHATPAY_APIV3_KEY_FILE: .*chmod 600 {key_file}"):
        create_app(config)


def test_with_nothing_configured_it_runs_in_sandbox_mode(app: Flask, client: Any) -> None:
    key = Path(app.instance_path) / "license_key.pem"
    assert app.config["WECHATPAY_MODE"] == "sandbox"
    assert key.stat().st_mode & 0o777 == 0o600
    assert app.extensions["lbpay.shop"].notify_url == "https://127.0.0.1:5000/wechatpay/notify/transaction"
    # It publishes the license key it made.
    [published] = client.get("/api/v1/license-keys").get_json()["keys"]
    assert published["kid"] == key_id(load_signing_key(key).public_key)
    # A second start reuses the same keys instead of making new ones.
    before = key.read_bytes()
    create_app({"INSTANCE_PATH": app.instance_path, "SCHEDULER": "off"})
    assert key.read_bytes() == before


def test_certificate_mode_is_used_without_a_public_key(config: dict) -> None:
    from wechatpay.verifier import CertificateStore

    del config["WECHATPAY_PUBLIC_KEY_FILE"], config["WECHATPAY_PUBLIC_KEY_ID"]
    app = create_app(config)
    verifier = app.extensions["lbpay.shop"].verifier
    assert verifier.mode == "certificate" and verifier.public_key is None
    assert isinstance(verifier.certificates, CertificateStore)


def test_the_public_key_settings_keep_both_keys_until_verify_says_public_key(config: dict) -> None:
    # "both" is a migration's explicit choice; the public key alone is the default (issue 24).
    both = create_app({**config, "WECHATPAY_VERIFY": "both"}).extensions["lbpay.shop"]
    after = create_app(config).extensions["lbpay.shop"]

    assert both.verifier.mode == "both" and both.verifier.certificates is not None
    assert both.verifier.public_key is not None
    assert after.verifier.mode == "public_key" and after.verifier.certificates is None
