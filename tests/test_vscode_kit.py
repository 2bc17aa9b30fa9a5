"""The VS Code kit (clients/vscode): compiled with tsc, its Node tests against a live server, its page in Chromium."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from servers import LBPAY, ROOT, RunningServer, chromium, sandbox_mode_server

from billing.errors import CATALOGUE

KIT = ROOT / "clients" / "vscode"
SCREENSHOTS = Path(os.environ.get("LBPAY_SCREENSHOTS") or tempfile.mkdtemp(prefix="lbpay-shots-"))
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(e.violatedDirective));
window.__sent = [];
window.acquireVsCodeApi = () => ({ postMessage: (m) => window.__sent.push(m), getState: () => null, setState: () => {} });
"""


def node() -> str:
    """Node 20 from Debian; its absence fails the test rather than skipping it."""
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is missing: run `make system-deps` (Debian's nodejs, version 20)")
    return path


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    """Run a command; fail with its output when it exits non-zero."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def built() -> Path:
    """The kit compiled by its pinned tsc (the Makefile's `npm ci` installs it)."""
    if not (KIT / "node_modules" / "typescript").is_dir():
        pytest.fail("clients/vscode/node_modules is missing: run `make test-vscode` (it runs npm ci)")
    run(["npm", "run", "--silent", "build"], KIT)
    return KIT / "out"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lbpay-vscode")


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[RunningServer]:
    with sandbox_mode_server(folder) as server:
        yield server


def node_env(server: RunningServer, folder: Path) -> dict[str, str]:
    """What the Node tests need: the server, and how to act as its creator (tests/node/creator.py)."""
    return {**os.environ, "LBPAY_BASE_URL": server.base, "NO_PROXY": "127.0.0.1,localhost",
            "LBPAY_INSTANCE_PATH": str(folder / "instance"), "LBPAY_PUBLIC_BASE_URL": server.base,
            "LBPAY_CREATOR": json.dumps([sys.executable, str(ROOT / "tests" / "node" / "creator.py")]),
            "LBPAY_REPO": str(ROOT), "PYTHONPATH": str(ROOT)}


def node_tests(paths: list[str], env: dict[str, str], server: RunningServer) -> str:
    done = subprocess.run([node(), "--test", "--test-reporter=spec", *paths], cwd=KIT, env=env,
                          capture_output=True, text=True, timeout=300)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report + "\n--- server (tail) ---\n" + server.output()[-6000:]
    assert "ℹ skipped 0" in report and "ℹ fail 0" in report, report
    return report


def test_the_kit_passes_its_node_tests_against_the_live_server(built: Path, server: RunningServer,
                                                              folder: Path) -> None:
    files = sorted(str(p.relative_to(KIT)) for p in (KIT / "test").glob("*.test.js"))
    report = node_tests(files, node_env(server, folder), server)
    for name in ("the license reaches onLicense", "cancel closes the order", "WeChat down",
                 "an expired order", "a revoked license is refused", "a missing or unreadable expiresAt",
                 "is the one the panel shows"):
        assert name in report, report


def test_the_servers_revocation_list_refuses_a_revoked_license(built: Path, server: RunningServer,
                                                                folder: Path) -> None:
    node_tests(["test/typed-revocations.live.js"], node_env(server, folder), server)


def test_the_kit_explains_every_error_code_of_the_server(built: Path) -> None:
    script = "const e = require('./out/errors.js'); process.stdout.write(JSON.stringify(e.SERVER_ERRORS));"
    ours = json.loads(run([node(), "-e", script], KIT))
    assert ours == {code: {"status": t.status, "zh": t.message_zh, "en": t.message_en, "action": t.action}
                    for code, t in CATALOGUE.items()}


def test_the_kit_keeps_the_extension_client_as_its_only_client(built: Path) -> None:
    package = json.loads((KIT / "package.json").read_text())
    assert not package.get("dependencies")
    lock = json.loads((KIT / "package-lock.json").read_text())
    pinned = {name: spec for name, spec in package["devDependencies"].items()}
    assert all(spec[0].isdigit() for spec in pinned.values()), pinned
    assert {name: lock["packages"][f"node_modules/{name}"]["version"] for name in pinned} == pinned
    source = (KIT / "src" / "payClient.js").read_text()
    assert source == (ROOT / "clients" / "extension" / "index.js").read_text().replace("// @ts-check\n", "", 1)
    tracked = run(["git", "ls-files", "clients/vscode"], ROOT).split()
    assert "clients/vscode/src/payClient.js" not in tracked and not any("/out/" in f or "node_modules" in f for f in tracked)


def lbpay(instance: Path, base: str, *args: str) -> str:
    """Run an `lbpay` command on the creator's side of a sandbox-mode instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(LBPAY_INSTANCE_PATH=str(instance), LBPAY_PUBLIC_BASE_URL=base)
    return run([*LBPAY, *args], ROOT, env=env, timeout=60)


def kit_loads_keyring(folder: Path, signed: str | None = None) -> dict[str, Any]:
    """What the kit's loadKeyring makes of FOLDER/licence-keys/keyring.json, and whether it verifies ``signed``."""
    script = ("const { kit } = require('./test/harness.js');"
              f"const ring = kit.loadKeyring({json.dumps(str(folder))});"
              f"const signed = {json.dumps(signed)};"
              "const list = signed === null ? null : kit.verifyRevocations(signed, ring);"
              "process.stdout.write(JSON.stringify({ ring, revocations: list && (list.ok || list.reason) }));")
    return dict(json.loads(run([node(), "-e", script], KIT)))


def test_the_kit_loads_the_keyring_lbpay_keys_export_writes(built: Path, server: RunningServer, folder: Path,
                                                            tmp_path: Path) -> None:
    printed = lbpay(folder / "instance", server.base, "keys", "export", "--sandbox-key", str(tmp_path / "live"))
    assert "keyring.json" in printed
    signed = requests.get(server.base + "/api/v1/revocations", timeout=10).text
    loaded = kit_loads_keyring(tmp_path / "live", signed)
    published = requests.get(server.base + "/api/v1/license-keys", timeout=10).json()["keys"]
    assert loaded["ring"] == {"keys": [{"kid": k["kid"], "pem": k["public_key_pem"], "active": k["active"]}
                                       for k in published]}
    assert loaded["revocations"] is True  # the server's signed list verifies under the exported keys

    # After a rotation the keyring holds the retired key too, and the kit still takes it as written.
    fresh = tmp_path / "rotated"
    lbpay(fresh, server.base, "init")
    lbpay(fresh, server.base, "keys", "rotate")
    lbpay(fresh, server.base, "keys", "export", "--sandbox-key", str(fresh / "out"))
    written = json.loads((fresh / "out" / "licence-keys" / "keyring.json").read_text())
    ring = kit_loads_keyring(fresh / "out")["ring"]
    assert ring == written and [k["active"] for k in ring["keys"]] == [True, False]


# --- the page, in Chromium ------------------------------------------------------------------

def page_html(built: Path) -> str:
    script = ("const { pageHtml } = require('./out/webview.js');"
              "process.stdout.write(pageHtml({ nonce: 'test-nonce-123', cspSource: 'vscode-webview://fake' }));")
    return run([node(), "-e", script], KIT)


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.mark.browser
def test_the_panel_page_draws_every_state_in_chromium(built: Path, server: RunningServer) -> None:
    course = next(c for c in requests.get(server.base + "/api/v1/courses", timeout=10).json()["courses"]
                  if c["id"] == "cpp-primer-5th")
    order = requests.post(server.base + "/api/v1/orders", json={"course_id": "cpp-primer-5th"}, timeout=10).json()
    base: dict[str, Any] = {"course": course, "order": None, "error": None, "license": None, "purchases": None}
    waiting = {**base, "phase": "waiting", "order": {k: order[k] for k in
                                                     ("order_id", "amount_fen", "qr_svg", "expires_at", "status")}}
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 480, "height": 760}, locale="zh-CN")
        page.add_init_script(CSP_PROBE)
        html = page_html(built)
        # VS Code serves the page from its own origin; a routed address stands in for it.
        page.route("https://webview.test/", lambda route: route.fulfill(body=html, content_type="text/html"))
        page.goto("https://webview.test/")
        page.wait_for_function("window.__sent.length > 0")
        assert page.evaluate("window.__sent") == [{"type": "ready"}]

        def post(state: dict[str, Any]) -> None:
            page.evaluate("(s) => window.postMessage(s, '*')", state)
            page.wait_for_function("(p) => document.getElementById('app').dataset.phase === p", arg=state["phase"])

        post({**base, "phase": "ready"})
        assert page.text_content("#course-title") == "C++ Primer 第5版"
        assert page.text_content("#price") == "¥99.00"
        shot(page, "vscode-buy.png")
        page.click("#buy")
        assert page.evaluate("window.__sent.at(-1)") == {"type": "buy"}

        post(waiting)
        page.wait_for_function("document.getElementById('qr').naturalWidth > 0")
        assert "¥99.00" in page.text_content("body")
        countdown = page.text_content("#countdown")
        assert "后过期" in countdown and "QR expires in" in countdown
        assert page.get_attribute("#status", "data-status") == "pending"
        shot(page, "vscode-qr.png")

        # A poll that brings a replaced code_url (the server renews it before WeChat's 2 hours) redraws the QR.
        renewed = requests.post(server.base + "/api/v1/orders", json={"course_id": "cpp-primer-5th"},
                                timeout=10).json()["qr_svg"]
        assert renewed != order["qr_svg"]
        page.evaluate("(s) => window.postMessage(s, '*')", {**waiting, "order": {**waiting["order"], "qr_svg": renewed}})
        drawn = "data:image/svg+xml;base64," + base64.b64encode(renewed.encode()).decode()
        page.wait_for_function("(src) => { const qr = document.getElementById('qr'); "
                               "return qr.src === src && qr.naturalWidth > 0; }", arg=drawn)
        page.click("#cancel")
        assert page.evaluate("window.__sent.at(-1)") == {"type": "cancel"}

        for code, text in CATALOGUE.items():
            error = {"code": code, "message_zh": text.message_zh, "message_en": text.message_en, "action": text.action}
            post({**base, "phase": "failed", "error": error, "order": waiting["order"]})
            assert page.get_attribute("#error", "data-code") == code
            assert page.text_content("#error-zh") == text.message_zh
            assert page.text_content("#error-en") == text.message_en
            assert "下一步" in page.text_content("#error-action")
            assert page.is_visible("#retry") == (text.action in ("retry", "retry_later", "new_order")), code
            if code == "wechat_unavailable":
                shot(page, "vscode-wechat-down.png")

        post({**base, "phase": "licensed", "license": {"id": "lic-1", "expires_at": "2126-01-01T00:00:00.000Z"}})
        assert "许可证已激活" in page.text_content("#licensed")
        shot(page, "vscode-licensed.png")

        post({**base, "phase": "purchases", "purchases": [
            {"order_id": order["order_id"], "course_id": "cpp-primer-5th", "amount_fen": 9900, "status": "fulfilled",
             "created_at": order["created_at"], "license": {"id": "lic-1", "state": "active", "expires_at": "2126-01-01T00:00:00.000Z"}},
            {"order_id": "LB-old", "course_id": "rust-monthly", "amount_fen": 2900, "status": "refunded",
             "created_at": order["created_at"], "license": {"id": "lic-0", "state": "revoked", "expires_at": "2026-01-01T00:00:00.000Z"}},
        ]})
        assert page.locator("button.restore").count() == 1
        shot(page, "vscode-purchases.png")
        page.click("button.restore")
        assert page.evaluate("window.__sent.at(-1)") == {"type": "restore", "licenseId": "lic-1"}
        assert page.evaluate("window.__cspViolations") == []


# --- apply.sh on a stand-in extension of ours ---------------------------------------------------

def guide_wiring() -> str:
    """The `src/lbpayWiring.ts` block of INTEGRATION.md, exactly as a creator would paste it."""
    text = (KIT / "INTEGRATION.md").read_text()
    start = text.index("```ts\n// src/lbpayWiring.ts\n") + len("```ts\n")
    return text[start:text.index("```", start)]


def test_apply_sh_puts_the_kit_into_an_extension_that_tsc_compiles(built: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from servers import public_pem

    from licensing import key_id

    ext = tmp_path / "extension"
    shutil.copytree(ROOT / "tests" / "vscode_standin", ext, ignore=shutil.ignore_patterns("out"))
    (ext / "node_modules").symlink_to(KIT / "node_modules")
    # What `lbpay keys export DIR` writes: the active key as public-key.txt, and the keyring.
    keys = tmp_path / "keys" / "licence-keys"
    keys.mkdir(parents=True)
    pairs = [rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key() for _ in range(2)]
    (keys / "public-key.txt").write_bytes(public_pem(pairs[0]))
    keyring = {"keys": [{"kid": key_id(k), "pem": public_pem(k).decode(), "active": i == 0} for i, k in enumerate(pairs)]}
    (keys / "keyring.json").write_text(json.dumps(keyring))

    for _ in range(2):  # a second run changes nothing more
        printed = run(["sh", str(KIT / "apply.sh"), str(ext), str(tmp_path / "keys")], ROOT)
    assert "Still by hand" in printed and "activate()" in printed
    package = json.loads((ext / "package.json").read_text())
    assert [c["command"] for c in package["contributes"]["commands"]] == [
        "standin.openLicenseManager", "lbpay.buyWithWeChatPay", "lbpay.myPurchases"]
    assert package["contributes"]["commands"][1]["title"] == "Buy with WeChat Pay · 微信支付购买"
    assert "licence-keys/keyring.json" in package["files"] and "dependencies" not in package
    assert json.loads((ext / "tsconfig.json").read_text())["compilerOptions"]["allowJs"] is True
    assert not (ext / "licence-keys" / "private-key.txt").exists()
    assert (ext / "licence-keys" / "public-key.txt").read_bytes() == public_pem(pairs[0])

    (ext / "src" / "lbpayWiring.ts").write_text(guide_wiring())
    run([str(KIT / "node_modules" / ".bin" / "tsc"), "-p", str(ext)], ext)
    for compiled in ("extension.js", "lbpayWiring.js", "lbpay/index.js", "lbpay/payClient.js"):
        assert (ext / "out" / compiled).is_file(), compiled
    # The compiled extension reads the keyring it now ships.
    script = ("require('./test/harness.js');"
              f"const kit = require({json.dumps(str(ext / 'out' / 'lbpay' / 'index.js'))});"
              f"process.stdout.write(JSON.stringify(kit.loadKeyring({json.dumps(str(ext))})));")
    assert json.loads(run([node(), "-e", script], KIT)) == keyring
