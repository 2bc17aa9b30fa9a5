"""Issue 15, broken 8: sandbox mode is never a silent default where something production-like is set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import free_port, write_secret

from app import create_app
from licensing import generate_private_key_pem
from licensing.keys import SigningKey
from settings import ConfigError, bind_problems, load_config

ROOT = Path(__file__).parent.parent


def settings_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"INSTANCE_PATH": str(tmp_path / "instance"), "SCHEDULER": "off", **extra}


def a_license_key(tmp_path: Path) -> str:
    return str(write_secret(tmp_path / "license_key.pem", generate_private_key_pem()))


@pytest.mark.parametrize("production_like", ["https_url", "license_key", "secret_key", "secret_key_file"])
def test_a_production_like_setting_without_a_mode_is_refused(tmp_path: Path, production_like: str) -> None:
    extra = {
        "https_url": {"PUBLIC_BASE_URL": "https://pay.example.com"},
        "license_key": {"LICENSE_KEY_FILE": a_license_key(tmp_path)},
        "secret_key": {"SECRET_KEY": "a-long-random-production-secret"},
        "secret_key_file": {"SECRET_KEY_FILE": str(write_secret(tmp_path / "secret", b"a-long-random-secret"))},
    }[production_like]
    with pytest.raises(ConfigError) as refused:
        create_app(settings_for(tmp_path, **extra))
    [problem] = refused.value.problems
    assert problem.name == "LBPAY_WECHATPAY_MODE"
    assert "live or sandbox" in problem.rule and "pays for anything" in problem.rule


def test_the_same_settings_with_an_explicit_mode_are_read_as_asked(tmp_path: Path) -> None:
    config = load_config(settings_for(tmp_path, PUBLIC_BASE_URL="https://127.0.0.1:5443", WECHATPAY_MODE="sandbox",
                                      SECRET_KEY="a-long-random-production-secret"), str(tmp_path))
    assert config.mode == "sandbox" and config.public_base_url == "https://127.0.0.1:5443"


def test_nothing_set_is_still_the_sandbox_on_this_machine(tmp_path: Path) -> None:
    config = load_config(settings_for(tmp_path), str(tmp_path))
    assert config.mode == "sandbox" and config.public_base_url == "http://127.0.0.1:5000"


@pytest.mark.parametrize("setting", ["LICENSE_KEY_FILE", "LICENSE_KEYS_DIR"])
def test_sandbox_mode_never_loads_a_license_signing_key(tmp_path: Path, setting: str) -> None:
    value = a_license_key(tmp_path) if setting == "LICENSE_KEY_FILE" else str(tmp_path)
    with pytest.raises(ConfigError) as refused:
        create_app(settings_for(tmp_path, WECHATPAY_MODE="sandbox", **{setting: value}))
    [problem] = refused.value.problems
    assert problem.name == "LBPAY_" + setting and "never loaded in sandbox mode" in problem.rule
    assert not (tmp_path / "instance" / "lbpay.db").exists()  # refused before anything was opened


def test_sandbox_signs_with_its_own_throwaway_key(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, WECHATPAY_MODE="sandbox"))
    ring = app.extensions["lbpay.shop"].license_keys
    local = SigningKey.from_pem((tmp_path / "instance" / "license_key.pem").read_bytes())
    assert ring.active.kid == local.kid and list(ring.public_keys()) == [local.kid]


@pytest.mark.parametrize("url", ["http://pay.example.com", "https://203.0.113.7:8443", "http://0.0.0.0:5000"])
def test_a_sandbox_for_other_machines_needs_an_explicit_yes(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(settings_for(tmp_path, WECHATPAY_MODE="sandbox", PUBLIC_BASE_URL=url), str(tmp_path))
    assert refused.value.problems[0].name == "LBPAY_PUBLIC_BASE_URL"
    assert "LBPAY_SANDBOX_PUBLIC=on" in refused.value.problems[0].rule
    config = load_config(settings_for(tmp_path, WECHATPAY_MODE="sandbox", PUBLIC_BASE_URL=url,
                                      SANDBOX_PUBLIC="on"), str(tmp_path))
    assert config.sandbox_public


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "http://localhost:8000", "http://[::1]:5000",
                                 "http://127.0.0.2:9000"])
def test_loopback_public_urls_need_nothing_more(tmp_path: Path, url: str) -> None:
    assert load_config(settings_for(tmp_path, PUBLIC_BASE_URL=url), str(tmp_path)).mode == "sandbox"


@pytest.mark.parametrize("binds, refused", [
    (["127.0.0.1:5000"], False), (["localhost:5000"], False), (["[::1]:5000"], False),
    (["unix:/run/lbpay.sock"], False), (["0.0.0.0:8080"], True), (["127.0.0.1:5000", "[::]:5000"], True),
    (["192.0.2.10:80"], True), ([":8000"], True),
])
def test_which_bind_addresses_a_sandbox_refuses(tmp_path: Path, binds: list[str], refused: bool) -> None:
    sandbox = load_config(settings_for(tmp_path), str(tmp_path))
    assert bool(bind_problems(sandbox, binds)) is refused
    told = load_config(settings_for(tmp_path, SANDBOX_PUBLIC="on"), str(tmp_path))
    assert bind_problems(told, binds) == []


def test_gunicorn_refuses_a_sandbox_on_every_address_before_binding(tmp_path: Path) -> None:
    """gunicorn's on_starting hook runs before it opens a socket: nothing listens on 0.0.0.0, not even briefly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env["LBPAY_INSTANCE_PATH"] = str(tmp_path / "instance")
    done = subprocess.run([sys.executable, "-m", "gunicorn", "app:create_app()", "--bind", f"0.0.0.0:{free_port()}"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "LBPAY_SANDBOX_PUBLIC" in done.stderr and "0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr and "Booting worker" not in done.stderr
