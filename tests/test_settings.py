"""Settings are read once, in one place, and every problem is reported at once without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import clean_environment, command_line

from settings import ConfigError, load_config

ROOT = Path(__file__).parent.parent
LIVE_SETTINGS = ("SECRET_KEY", "PUBLIC_BASE_URL", "LICENSE_KEY_FILE", "WECHATPAY_MCHID", "WECHATPAY_APPID",
                 "WECHATPAY_MERCHANT_KEY_FILE", "WECHATPAY_MERCHANT_SERIAL", "WECHATPAY_APIV3_KEY")


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env["LBPAY_INSTANCE_PATH"] = str(tmp_path / "instance")
    env.update({"LBPAY_" + k: v for k, v in settings.items()})
    return env


def test_live_mode_with_nothing_set_names_every_missing_setting_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"WECHATPAY_MODE": "live"}, str(tmp_path))
    named = {problem.name for problem in info.value.problems}
    assert named >= {"LBPAY_" + name for name in LIVE_SETTINGS}
    assert all(problem.example for problem in info.value.problems if "required" in problem.rule)


def test_check_config_lists_every_problem_with_no_traceback_and_exits_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "from cli import main; main()", "check-config"],
                          env=clean_env(tmp_path, WECHATPAY_MODE="live", ORDER_TTL_MINUTES="soon"),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for name in (*LIVE_SETTINGS, "ORDER_TTL_MINUTES"):
        assert f"LBPAY_{name}:" in done.stderr
    assert "'soon'" in done.stderr  # the bad value is shown when it is not a secret


def test_check_config_never_prints_a_secret(tmp_path: Path) -> None:
    done = command_line(tmp_path / "instance", WECHATPAY_MODE="live", WECHATPAY_APIV3_KEY="s3cret-but-short")(
        "check-config")
    assert done.exit_code == 2 and "exactly 32 bytes" in done.stderr
    assert "s3cret-but-short" not in done.output


def test_check_config_says_what_will_run_when_all_is_well(tmp_path: Path) -> None:
    done = command_line(tmp_path / "instance")("check-config")
    assert done.exit_code == 0, done.stderr
    assert "settings ok: sandbox mode" in done.stdout


def test_every_cli_command_reports_a_bad_setting_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The entry point's own handler, called in this process (the check-config test above runs it as a process)."""
    from cli import main

    clean_environment(monkeypatch)
    monkeypatch.setenv("LBPAY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LBPAY_ORDER_TTL_MINUTES", "0")
    with pytest.raises(SystemExit) as exited:
        main(["courses", "list"])
    assert exited.value.code == 2
    written = capsys.readouterr()
    assert "LBPAY_ORDER_TTL_MINUTES: must be between 5 and 1440" in written.err
    assert "Traceback" not in written.err + written.out


def test_gunicorn_refuses_bad_settings_before_any_worker_starts(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gunicorn", "app:create_app()", "--bind", "127.0.0.1:0"],
                          env=clean_env(tmp_path, WECHATPAY_MODE="live"), cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "LBPAY_WECHATPAY_MCHID: required" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("spelling, meaning", [
    ("on", True), ("ON", True), ("true", True), ("True", True), ("1", True), ("yes", True),
    ("off", False), ("OFF", False), ("false", False), ("False", False), ("0", False), ("no", False),
])
def test_booleans_take_the_usual_spellings(tmp_path: Path, spelling: str, meaning: bool) -> None:
    config = load_config({"SCHEDULER": spelling, "SESSION_COOKIE_SECURE": spelling}, str(tmp_path))
    assert config.scheduler is meaning and config.session_cookie_secure is meaning


def test_a_boolean_that_means_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LBPAY_SCHEDULER: must be on or off"):
        load_config({"SCHEDULER": "maybe"}, str(tmp_path))


def test_the_mode_takes_any_case(tmp_path: Path) -> None:
    assert load_config({"WECHATPAY_MODE": "SANDBOX"}, str(tmp_path)).mode == "sandbox"


def test_help_starts_no_thread_and_no_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import cli

    for name in list(os.environ):
        if name.startswith("LBPAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LBPAY_INSTANCE_PATH", str(tmp_path / "instance"))
    before = {t.ident for t in threading.enumerate()}
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "check-config" in result.output
    assert {t.ident for t in threading.enumerate()} - before == set()


def test_version_prints_ours() -> None:
    from cli import cli

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("lbpay, version ")


def test_the_commands_are_reachable_through_flask_too(tmp_path: Path) -> None:
    import tomllib

    from cli import cli

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["flask.commands"]
    assert set(listed) == set(cli.commands) - {"routes", "shell"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "courses", "--help"],
                          env=clean_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Courses for sale" in done.stdout
