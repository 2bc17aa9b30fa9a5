"""The deploy files, checked without Docker: Dockerfile, fly.toml, systemd, Caddy, CI; the image's start command runs."""

from __future__ import annotations

import configparser
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).parent.parent
VENV_BIN = Path(sys.executable).parent  # the venv running the tests has gunicorn and lbpay


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile():
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def start_command() -> list[str]:
    commands = [json.loads(rest) for keyword, rest in dockerfile() if keyword == "CMD"]
    assert len(commands) == 1, "one CMD, in exec (JSON) form"
    return commands[0]


def fly() -> dict:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def test_the_dockerfile_builds_a_slim_non_root_gunicorn_image() -> None:
    instructions = dockerfile()
    # The image is the last stage (an earlier one may only fetch static files, e.g. htmx from npm).
    assert [rest for keyword, rest in instructions if keyword == "FROM"][-1] == "python:3.11-slim"
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    command = start_command()
    assert command[:2] == ["gunicorn", "app:create_app()"]
    assert "--threads" in command and int(command[command.index("--threads") + 1]) > 1
    assert command[command.index("--bind") + 1] == "0.0.0.0:8080"
    for keyword, rest in instructions:
        if keyword == "COPY" and not rest.startswith("--from="):
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                assert not source.endswith((".pem", ".db", ".env")), f"COPY {source} would bake a secret in"
    assert docker_env()["LBPAY_DATABASE_URL"].startswith("sqlite:////data/")


def test_the_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("*.pem", "instance", ".venv", "*.db", ".git", "*.sqlite3", ".env"):
        assert pattern in ignored


def test_fly_toml_mounts_a_volume_checks_health_forces_https_and_mounts_keys_as_files() -> None:
    config = fly()
    env = config["env"]
    (mount,) = config["mounts"]
    assert mount["destination"] == "/data"
    assert env["LBPAY_DATABASE_URL"] == "sqlite:////data/lbpay.db"
    assert env["LBPAY_LICENSE_KEYS_DIR"].startswith("/data/")  # rotated keys survive a restart
    service = config["http_service"]
    assert service["internal_port"] == 8080 and service["force_https"] is True
    assert service["min_machines_running"] == 1 and service["auto_start_machines"] is False
    assert [c["path"] for c in service["checks"]] == ["/healthz"]
    assert config["deploy"]["release_command"] == "lbpay init"
    files = {f["guest_path"]: f for f in config["files"]}
    key_files = {name: path for name, path in env.items() if name.endswith("_KEY_FILE")}
    assert len(key_files) == 3
    for name, path in key_files.items():
        assert path in files and files[path].get("secret_name"), f"{name} must be a secret file"
        assert "local_path" not in files[path] and "raw_value" not in files[path]
    assert not any("PRIVATE KEY" in str(value) for value in env.values())


def test_the_systemd_unit_and_caddy_agree_on_the_port_and_reload_with_hup() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read(ROOT / "deploy" / "lbpay.service")
    service = unit["Service"]
    assert '"app:create_app()"' in service["ExecStart"] and "gunicorn" in service["ExecStart"]
    assert service["User"] != "root" and "HUP" in service["ExecReload"]
    assert service["ExecStartPre"].endswith("lbpay init")
    port = re.search(r"--bind 127\.0\.0\.1:(\d+)", service["ExecStart"]).group(1)
    caddy = (ROOT / "deploy" / "Caddyfile").read_text()
    assert f"reverse_proxy 127.0.0.1:{port}" in caddy


def test_the_workflow_tests_every_push_and_deploys_main_only_with_a_token() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert "push" in triggers
    steps = workflow["jobs"]["test"]["steps"]
    assert any("make test" in step.get("run", "") for step in steps)
    deploy = workflow["jobs"]["deploy"]
    assert "refs/heads/main" in deploy["if"] and deploy["env"]["FLY_API_TOKEN"] == "${{ secrets.FLY_API_TOKEN }}"
    assert any("flyctl deploy" in step.get("run", "") and step.get("if") == "env.FLY_API_TOKEN != ''"
               for step in deploy["steps"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, deadline: float) -> requests.Response:
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_images_start_command_serves_healthz_outside_docker(tmp_path: Path) -> None:
    port = free_port()
    command = start_command()
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    command[0] = str(VENV_BIN / "gunicorn")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(docker_env())
    env.update(LBPAY_INSTANCE_PATH=str(tmp_path / "data"), LBPAY_DATABASE_URL=f"sqlite:///{tmp_path}/data/lbpay.db",
               LBPAY_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    init = subprocess.run([str(VENV_BIN / "lbpay"), "init"], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert init.returncode == 0, init.stderr
    server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        health = wait_for(f"http://127.0.0.1:{port}/healthz", time.monotonic() + 30)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        server.send_signal(signal.SIGHUP)  # what `systemctl reload` and key rotation use
        time.sleep(1.0)
        assert wait_for(f"http://127.0.0.1:{port}/healthz", time.monotonic() + 30).status_code == 200
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    lines = [line for line in err.decode().splitlines() if line.startswith("{")]
    assert any(json.loads(line).get("path") == "/healthz" for line in lines), err.decode()[-2000:]
    if server.returncode not in (0, -signal.SIGTERM):
        pytest.fail(f"gunicorn exited with {server.returncode}: {err.decode()[-2000:]}")
