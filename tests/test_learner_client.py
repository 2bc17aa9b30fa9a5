"""The extension's client (clients/extension) passes its Node tests against the real server with its sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from servers import ROOT, RunningServer, sandbox_mode_server

CLIENT = ROOT / "clients" / "extension"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with sandbox_mode_server(tmp_path_factory.mktemp("lbpay-client")) as server:
        yield server


def test_the_extension_client_passes_its_node_tests_against_the_live_server(server: RunningServer) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: run `make system-deps` (Debian's nodejs, version 20)")
    env = {**os.environ, "LBPAY_BASE_URL": server.base, "NO_PROXY": "127.0.0.1,localhost"}
    done = subprocess.run([node, "--test", "--test-reporter=spec", "test/"], cwd=CLIENT, env=env,
                          capture_output=True, text=True, timeout=180)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report + "\n--- server (tail) ---\n" + server.output()[-6000:]
    assert "# skipped 0" in report or "ℹ skipped 0" in report, report
    assert "fail 0" in report, report


def test_the_client_has_no_dependencies_beyond_node() -> None:
    import json

    package = json.loads((CLIENT / "package.json").read_text())
    assert not package.get("dependencies") and package["engines"]["node"] == ">=20"
    source = (CLIENT / "index.js").read_text()
    required = {line.split("require(")[1].split(")")[0].strip("'\"")
                for line in source.splitlines() if "require(" in line and not line.lstrip().startswith("//")}
    assert required <= {"node:crypto"}, required
    assert Path(CLIENT / "test").is_dir()
