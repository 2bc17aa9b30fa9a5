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

# How long a refused start may take before the test calls it a server that started: a hang
# detector only. At load 40 on two cores, a refusal (Python, the app's imports) took over 30 s.
REFUSAL_WAIT = 120


def settings_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"INSTANCE_PATH": str(tmp_path / "instance"), "SCHEDULER": "off", **extra}


def a_license_key(tmp_path: Path) -> str:
    return str(write_secret(tmp_path / "license_key.pem", generate_private_key_pem()))


@pytest.mark.parametrize("production_like", ["https_url", "license_key", "secret_key", "secret_key_file",
                                             "apiv3_key", "apiv3_key_file", "metrics_token", "smtp", "smtp_file"])
def test_a_production_like_setting_without_a_mode_is_refused(tmp_path: Path, production_like: str) -> None:
    mail_from = {"MAIL_FROM": "Learning Buddy <pay@example.com>"}
    extra = {
        "https_url": {"PUBLIC_BASE_URL": "https://pay.example.com"},
        "license_key": {"LICENSE_KEY_FILE": a_license_key(tmp_path)},
        "secret_key": {"SECRET_KEY": "a-long-random-production-secret"},
        "secret_key_file": {"SECRET_KEY_FILE": str(write_secret(tmp_path / "secret", b"a-long-random-secret"))},
        # Issue 24: these too say someone meant a real shop.
        "apiv3_key": {"WECHATPAY_APIV3_KEY": "k" * 32},
        "apiv3_key_file": {"WECHATPAY_APIV3_KEY_FILE": str(write_secret(tmp_path / "apiv3", b"k" * 32))},
        "metrics_token": {"METRICS_TOKEN": "m" * 32},
        "smtp": {"SMTP_URL": "smtps://pay:secret@smtp.example.com:465", **mail_from},
        "smtp_file": {"SMTP_URL_FILE": str(write_secret(tmp_path / "smtp", b"smtps://smtp.example.com:465")),
                      **mail_from},
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


def test_a_mail_server_on_this_machine_is_a_demo_setting(tmp_path: Path) -> None:
    config = load_config(settings_for(tmp_path, SMTP_URL="smtp://127.0.0.1:2525", MAIL_FROM="demo@example.com"),
                         str(tmp_path))
    assert config.mode == "sandbox"


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
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=REFUSAL_WAIT)
    assert done.returncode == 2, done.stderr
    assert "LBPAY_SANDBOX_PUBLIC" in done.stderr and "0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr and "Booting worker" not in done.stderr


# --- issue 24: the guard in every start path, and in the simulator itself ----------------------

def _lbpay(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update({"LBPAY_INSTANCE_PATH": str(tmp_path / "instance"), "LBPAY_SCHEDULER": "off"})
    env.update({"LBPAY_" + k: v for k, v in settings.items()})
    # A guard that fails lets the server start and serve until the timeout: the test then fails.
    return subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=REFUSAL_WAIT)


@pytest.mark.parametrize("command", [["run", "--host", "0.0.0.0"], ["run", "-h", "::"],
                                     ["sandbox", "--host", "0.0.0.0"], ["sandbox", "--host", "192.0.2.10"]])
def test_every_lbpay_start_path_refuses_a_sandbox_on_other_addresses(tmp_path: Path, command: list[str]) -> None:
    done = _lbpay(tmp_path, *command, "--port", str(free_port()))
    assert done.returncode == 2, done.stderr
    assert "LBPAY_SANDBOX_PUBLIC" in done.stderr and "Traceback" not in done.stderr
    assert "Running on" not in done.stderr + done.stdout


def test_flask_run_has_the_same_guard(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update({"LBPAY_INSTANCE_PATH": str(tmp_path / "instance"), "LBPAY_SCHEDULER": "off"})
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "run", "--host", "0.0.0.0",
                           "--port", str(free_port())], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=REFUSAL_WAIT)
    assert done.returncode == 2 and "LBPAY_SANDBOX_PUBLIC" in done.stderr, done.stderr
    assert "Running on" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_lbpay_sandbox_on_loopback_or_told_public_starts(tmp_path: Path) -> None:
    # A loopback --host passes the guard; so does another address with LBPAY_SANDBOX_PUBLIC=on.
    from settings import sandbox_bind_problems

    assert sandbox_bind_problems(["127.0.0.1:8001"], public=False) == []
    assert sandbox_bind_problems(["0.0.0.0:8001"], public=True) == []


@pytest.mark.parametrize("family, address, refused", [
    ("inet", "0.0.0.0", True), ("inet", "127.0.0.1", False), ("inet6", "::", True), ("inet6", "::1", False),
    ("unix", "", False),
])
def test_an_inherited_socket_is_judged_by_the_address_it_is_bound_to(
        tmp_path: Path, family: str, address: str, refused: bool) -> None:
    import socket

    kinds = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}
    with socket.socket(kinds[family], socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "s.sock") if family == "unix" else (address, 0))
        sandbox = load_config(settings_for(tmp_path), str(tmp_path))
        problems = bind_problems(sandbox, [f"fd://{listener.fileno()}"])
        assert bool(problems) is refused, problems
        assert listener.fileno() >= 0  # looked at, never closed
    assert bind_problems(sandbox, ["fd://987654"]), "a descriptor that is not a socket is refused, not trusted"


@pytest.mark.parametrize("peer, public, allowed", [
    ("127.0.0.1", False, True), ("::1", False, True), ("203.0.113.5", False, False), ("2001:db8::5", False, False),
    ("203.0.113.5", True, True),
])
def test_the_mounted_simulator_answers_only_loopback_peers(tmp_path: Path, peer: str, public: bool,
                                                           allowed: bool) -> None:
    extra = {"SANDBOX_PUBLIC": "on"} if public else {}
    app = create_app(settings_for(tmp_path, WECHATPAY_MODE="sandbox", **extra))
    client = app.test_client()
    for path in ("/sandbox/", "/sandbox/mail"):
        answer = client.get(path, environ_base={"REMOTE_ADDR": peer})
        if allowed:
            assert answer.status_code != 403, (path, answer.status_code)
        else:
            assert answer.status_code == 403, (path, answer.status_code)
            assert b"LBPAY_SANDBOX_PUBLIC" in answer.data


def test_keys_export_in_sandbox_mode_refuses_without_saying_it_is_the_throwaway_key(tmp_path: Path) -> None:
    # Issue 24: the sandbox's throwaway key, shipped in an extension, would let every free sandbox
    # license open paid content. Exporting it takes --sandbox-key, and says what it is.
    from conftest import command_line

    lbpay = command_line(tmp_path / "instance", WECHATPAY_MODE="sandbox", SCHEDULER="off")
    lbpay("init")
    refused = lbpay("keys", "export", str(tmp_path / "out"))
    assert refused.exit_code == 2 and "throwaway" in refused.output and "--sandbox-key" in refused.output
    assert not (tmp_path / "out").exists()
    told = lbpay("keys", "export", "--sandbox-key", str(tmp_path / "out"))
    assert told.exit_code == 0 and (tmp_path / "out" / "licence-keys" / "keyring.json").exists()
    assert "SANDBOX" in told.output and "never ship" in told.output
