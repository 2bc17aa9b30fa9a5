"""The deploy files, checked without Docker: Dockerfile, entrypoint, locks, fly.toml, systemd, Caddy, CI; the image's start command runs."""

from __future__ import annotations

import configparser
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests
import yaml
from deploy_files import ROOT, docker_env, dockerfile, exec_form, fly, in_checkout
from servers import free_port

VENV_BIN = Path(sys.executable).parent  # the venv running the tests has gunicorn and lbpay
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
PIN = re.compile(r"^([a-z0-9._-]+)==(\S+) \\$", re.MULTILINE)


def start_command() -> list[str]:
    return exec_form("CMD")


def test_gunicorn_keeps_an_idle_connection_longer_than_nodes_fetch_does() -> None:
    """undici (the kit's fetch) closes an idle socket after 4 s; with gunicorn's default 2 s the server closed
    first and the kit's next request on that socket failed ("other side closed"), as its tests did under load."""
    import runpy

    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["keepalive"] > 4


def test_the_dockerfile_builds_a_pinned_slim_gunicorn_image_whose_entrypoint_drops_root() -> None:
    instructions = dockerfile()
    # The image is the last stage (an earlier one may only fetch static files, e.g. htmx from npm).
    keyword, base = [(k, rest) for k, rest in instructions if k == "FROM"][-1]
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    # Root only inside the entrypoint, which hands over to the service user (uid 10001).
    assert not [rest for keyword, rest in instructions if keyword == "USER"]
    assert docker_env()["LBPAY_RUN_UID"] == "10001"
    entrypoint = exec_form("ENTRYPOINT")
    assert in_checkout(entrypoint[0]) == ENTRYPOINT and os.access(ENTRYPOINT, os.X_OK)
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


def test_the_image_installs_the_locked_dependencies_in_their_own_layer_before_the_code() -> None:
    steps = [(keyword, rest) for keyword, rest in dockerfile() if keyword in ("COPY", "RUN")]
    assert steps[0] == ("COPY", "requirements.lock ./")
    assert steps[1] == ("RUN", "pip install --require-hashes -r requirements.lock")
    # Then the whole context as .dockerignore filters it: pyproject.toml is the one list of modules.
    assert steps[2] == ("COPY", ". .")
    assert steps[3][1].startswith("pip install --no-deps --no-build-isolation . ")
    lock = (ROOT / "requirements.lock").read_text()
    pins = dict(PIN.findall(lock))
    assert "--hash=sha256:" in lock and {"flask", "gunicorn", "cryptography", "peewee", "setuptools"} <= set(pins)
    test_pins = dict(PIN.findall((ROOT / "requirements-test.lock").read_text()))
    assert {"pytest", "psycopg2-binary"} <= set(test_pins) and "pyinstrument" not in test_pins
    assert all(test_pins[name] == version for name, version in pins.items() if name in test_pins)
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements.lock" in makefile
    assert "--require-hashes -r requirements-test.lock" in makefile


def test_pyproject_installs_every_top_level_module_and_package_of_the_app() -> None:
    """The image installs what pyproject.toml lists: a module missing there is missing on Fly."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    # gunicorn.conf.py is gunicorn's settings file, read from the working folder, not a module to import.
    modules = {Path(f).stem for f in tracked if "/" not in f and f.endswith(".py") and f != "gunicorn.conf.py"}
    assert modules == set(tool["py-modules"]), "top-level modules and [tool.setuptools] py-modules differ"
    packages = {f.split("/")[0] for f in tracked if f.count("/") == 1 and f.endswith("/__init__.py")}
    include = tool["packages"]["find"]["include"]
    for package in packages - {"tests", "bench"}:
        assert f"{package}*" in include, f"package {package}/ is not in [tool.setuptools.packages.find] include"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in [*modules, *packages - {"tests", "bench"}, "templates", "static", "deploy", "requirements.lock",
                 "gunicorn.conf"]:
        assert name not in ignored and f"{name}.py" not in ignored, f".dockerignore keeps {name} out of the image"


def test_the_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("*.pem", "instance", ".venv", "*.db", ".git", "*.sqlite3", ".env"):
        assert pattern in ignored


def test_fly_toml_mounts_a_volume_checks_health_forces_https_and_hands_keys_over_as_private_copies() -> None:
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
    # "The temporary VM has full access to the network, environment variables and secrets, but not to
    # persistent volumes" (Fly): with SQLite on the volume there is no release_command.
    assert "release_command" not in config.get("deploy", {})
    assert config["kill_signal"] == "SIGTERM"
    command = start_command()
    graceful = int(command[command.index("--graceful-timeout") + 1])
    assert int(config["kill_timeout"].rstrip("s")) > graceful  # gunicorn finishes before Fly kills it
    files = {f["guest_path"]: f for f in config["files"]}
    assert all(path.startswith(env["LBPAY_SECRETS_FROM"] + "/") for path in files)
    key_files = {name: path for name, path in env.items() if name.endswith("_KEY_FILE")}
    assert len(key_files) == 3
    for name, path in key_files.items():
        # The app reads the entrypoint's private copy of each mounted secret file, never the original.
        assert path.startswith(env["LBPAY_SECRETS_DIR"] + "/"), name
        mounted = env["LBPAY_SECRETS_FROM"] + path[len(env["LBPAY_SECRETS_DIR"]):]
        assert mounted in files and files[mounted].get("secret_name"), f"{name} must be a secret file"
        assert "local_path" not in files[mounted] and "raw_value" not in files[mounted]
    assert not any("PRIVATE KEY" in str(value) for value in env.values())


def test_the_entrypoint_migrates_before_the_command_copies_secrets_0600_and_skips_sqlite_release_machines() -> None:
    script = ENTRYPOINT.read_text()
    assert script.startswith("#!/bin/sh\n") and "set -eu" in script
    lines = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    init = lines.index("$as_service lbpay init")
    replicated, final = [i for i, line in enumerate(lines) if line.startswith("exec ")]
    assert init < replicated < final and lines[final] == 'exec $as_service "$@"'
    # With a replica the server (only) runs under Litestream, after the volume was prepared from it.
    assert lines[replicated].startswith("exec env -u AWS_CA_BUNDLE $as_service litestream replicate -config")
    assert lines.index('$as_service lbpay replica prepare "$litestream_config" >&2') < init
    assert 'if [ "${RELEASE_COMMAND:-}" = 1 ]; then' in lines and "postgres://* | postgresql://*) ;;" in lines
    assert any(line.startswith("install -m 0600 $owner") for line in lines)
    assert "install -d -m 0700 $owner \"$secrets_dir\"" in lines
    assert any("setpriv --reuid=$run_uid --regid=$run_gid --clear-groups" in line for line in lines)
    syntax = subprocess.run(["sh", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_the_readme_sets_file_secrets_base64_encoded_as_fly_requires() -> None:
    readme = (ROOT / "README.md").read_text()
    for entry in fly()["files"]:
        # "The contents of both raw_value and secret_name must be base64 encoded" (Fly's fly.toml reference).
        assert re.search(rf'{entry["secret_name"]}="\$\(base64 -w0 [^)]+\)"', readme), entry["secret_name"]
    assert "release_command" in readme and "RELEASE_COMMAND=1" in readme


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



def test_the_workflow_tests_in_bookworm_with_pinned_actions_and_deploys_main_only_with_a_token() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert "push" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    for name in ("test", "test-postgres"):
        assert jobs[name]["container"]["image"].startswith("python:3.11-bookworm"), name
    runs = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert "make test" in runs and "make test-long" in runs  # the long whole-toolchain files too
    postgres = jobs["test-postgres"]
    assert postgres["services"]["postgres"]["image"].startswith("postgres:")
    assert any("make test-postgres" in step.get("run", "") for step in postgres["steps"])
    assert postgres["env"]["LBPAY_TEST_DATABASE_URL"].startswith("postgresql://")
    for job_name, job in jobs.items():
        for step in job["steps"]:
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{job_name}: {action} is not pinned to a commit"
    for name in ("test", "test-postgres"):
        cached = [step for step in jobs[name]["steps"] if step.get("uses", "").startswith("actions/cache@")]
        assert cached and "pip" in cached[0]["with"]["path"], name
    deploy = jobs["deploy"]
    assert "refs/heads/main" in deploy["if"] and deploy["env"]["FLY_API_TOKEN"] == "${{ secrets.FLY_API_TOKEN }}"
    assert any("flyctl deploy" in step.get("run", "") and step.get("if") == "env.FLY_API_TOKEN != ''"
               for step in deploy["steps"])


def wait_for(url: str, deadline: float) -> requests.Response:
    while True:
        try:
            return requests.get(url, timeout=2)
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or a worker still booting
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
