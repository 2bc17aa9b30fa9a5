"""The VS Code kit (clients/vscode): compiled with tsc, its Node tests against a live server, its page in Chromium."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from learner_helpers import Inbox, SmtpServer
from screens import shot
from servers import DEMO_COURSES, LBPAY, ROOT, RunningServer, sandbox_mode_server

from billing.errors import CATALOGUE

KIT = ROOT / "clients" / "vscode"
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


def build_kit() -> Path:
    """The kit compiled by its pinned tsc, once for all test processes: under a lock, and only when a source is newer.

    Two modules use the build (this one and test_alipay_kit_page), each maybe in its own xdist worker.
    A second build rewrote out/ while the first module's Node tests were loading it, and they failed
    with "RevocationStore is not a constructor" (a half-written out/revocations.js).
    """
    import fcntl

    if not (KIT / "node_modules" / "typescript").is_dir():
        pytest.fail("clients/vscode/node_modules is missing: run `make test-vscode` (it runs npm ci)")
    out = KIT / "out"
    out.mkdir(exist_ok=True)
    sources = [*(KIT / "src").rglob("*.ts"), KIT / "tsconfig.json", KIT / "package.json",
               KIT / "scripts" / "client.sh", ROOT / "clients" / "extension" / "index.js"]
    with (out / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        stamp = out / ".built"
        if not stamp.exists() or max(path.stat().st_mtime for path in sources) >= stamp.stat().st_mtime:
            run(["npm", "run", "--silent", "build"], KIT)
            stamp.touch()
    return out


@pytest.fixture(scope="module")
def built() -> Path:
    """The kit compiled by its pinned tsc (the Makefile's `npm ci` installs it)."""
    return build_kit()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lbpay-vscode")


class MaildirInbox(Inbox):
    """The learner's mailbox for the Node tests: every message the SMTP server takes, also as a file they read."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        with self.lock:
            name = f"{len(self.messages):04d}.eml"
        (self.folder / (name + ".tmp")).write_bytes(envelope.content)
        (self.folder / (name + ".tmp")).rename(self.folder / name)  # whole files only
        return answer


@pytest.fixture(scope="module")
def smtp(folder: Path) -> Iterator[SmtpServer]:
    """A real SMTP server on loopback whose mail lands in FOLDER/mail (LBPAY_MAILDIR for the Node tests)."""
    server = SmtpServer()
    server.inbox = MaildirInbox(folder / "mail")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def png(width: int, height: int) -> bytes:
    """A real PNG image (a colour gradient): binary bytes of every value, as a course's figures are."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + bytes((x * 7 + y * 3) % 256 for x in range(width) for _ in range(3)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# The courses' files as the creator puts them in the content folder: free/ for anyone, the rest paid.
COURSE_FILES: dict[str, bytes] = {
    "cpp-primer-5th/free/README.md": "# C++ Primer 第5版\n\n免费试读：第 1 章导读。Free preview: chapter 1.\n".encode(),
    "cpp-primer-5th/README.md": "# C++ Primer 第5版 · 课程首页\n\n从 ch01 开始。Start with ch01.\n".encode(),
    "cpp-primer-5th/ch01/hello.cpp": ('#include <iostream>\n\nint main() {\n'
                                      '    std::cout << "你好, C++ Primer!" << std::endl;\n    return 0;\n}\n').encode(),
    "cpp-primer-5th/ch01/figure.png": png(64, 48),
    "cpp-primer-5th/ch01/notes.md": "# 第 1 章笔记 · Chapter 1 notes\n".encode(),
    "rust-monthly/free/intro.md": "# Rust 每月一课\n".encode(),
    "rust-monthly/lesson1/main.rs": 'fn main() {\n    println!("hello");\n}\n'.encode(),
}


@pytest.fixture(scope="module")
def server(folder: Path, smtp: SmtpServer) -> Iterator[RunningServer]:
    # PROXY_HOPS: each Node test file sends its own X-Forwarded-For (test/harness.js), a learner's machine each.
    settings = {"SMTP_URL": smtp.url, "MAIL_FROM": "Learning Buddy <courses@learning-buddy.test>", "PROXY_HOPS": "1"}
    codes = (("codes", "add", "KIT20", "--percent", "20", "--course", "cpp-primer-5th"),
             ("codes", "add", "RUSTONLY", "--percent", "10", "--course", "rust-monthly"))
    with sandbox_mode_server(folder, DEMO_COURSES + codes, settings=settings) as server:
        for name, data in COURSE_FILES.items():
            target = folder / "instance" / "content" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        yield server


def node_env(server: RunningServer, folder: Path) -> dict[str, str]:
    """What the Node tests need: the server, its content and mail folders, and how to act as its creator."""
    return {**os.environ, "LBPAY_BASE_URL": server.base, "NO_PROXY": "127.0.0.1,localhost",
            "LBPAY_INSTANCE_PATH": str(folder / "instance"), "LBPAY_PUBLIC_BASE_URL": server.base,
            "LBPAY_CONTENT": str(folder / "instance" / "content"), "LBPAY_MAILDIR": str(folder / "mail"),
            "LBPAY_CREATOR": json.dumps([sys.executable, str(ROOT / "tests" / "node" / "creator.py")]),
            "LBPAY_REPO": str(ROOT), "PYTHONPATH": str(ROOT)}


def node_tests(paths: list[str], env: dict[str, str], server: RunningServer) -> str:
    """Run Node test files; a test that hangs fails by its own name (--test-timeout), with what it printed."""
    process = subprocess.Popen([node(), "--test", "--test-reporter=spec", "--test-timeout=240000", *paths],
                               cwd=KIT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        report, _ = process.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        process.kill()
        report, _ = process.communicate()
        pytest.fail("the Node tests hung past 540 s\n" + report + "\n--- server (tail) ---\n" + server.output()[-6000:])
    assert process.returncode == 0, report + "\n--- server (tail) ---\n" + server.output()[-6000:]
    assert "ℹ skipped 0" in report and "ℹ fail 0" in report, report
    return report


@pytest.mark.timeout(700)  # the Node suite's own per-test limit (240 s) names a hung test first
def test_the_kit_passes_its_node_tests_against_the_live_server(built: Path, server: RunningServer,
                                                              folder: Path) -> None:
    files = sorted(str(p.relative_to(KIT)) for p in (KIT / "test").glob("*.test.js"))
    report = node_tests(files, node_env(server, folder), server)
    for name in ("the license reaches onLicense", "cancel closes the order", "WeChat down",
                 "an expired order", "a revoked license is refused", "a missing or unreadable expiresAt",
                 "is the one the panel shows", "a dropped connection is tried once more", "My courses: the catalogue, lock icons", "learningbuddy: files — free",
                 "the activation link from the mail", "Enter license key: a pasted key", "restore on a new machine by e-mail",
                 "永久 · Lifetime", "without a server address or keyring", "an e-mail given when buying",
                 "a discount code typed in the panel"):
        assert name in report, report


def test_the_servers_revocation_list_refuses_a_revoked_license(built: Path, server: RunningServer,
                                                                folder: Path) -> None:
    node_tests(["test/typed-revocations.live.js"], node_env(server, folder), server)


def test_the_kit_explains_every_error_code_of_the_server(built: Path) -> None:
    script = "const e = require('./out/errors.js'); process.stdout.write(JSON.stringify(e.SERVER_ERRORS));"
    ours = json.loads(run([node(), "-e", script], KIT))
    assert ours == {code: {"status": t.status, "zh": t.message_zh, "en": t.message_en, "action": t.action}
                    for code, t in CATALOGUE.items()}


def test_the_kit_explains_every_refusal_of_the_content_provider(built: Path) -> None:
    """Each /provider refusal (billing/content.py) has the kit's words in both languages and a next step."""
    from billing.content import ERRORS

    script = "const p = require('./out/provider.js'); process.stdout.write(JSON.stringify(p.CONTENT_ERRORS));"
    words = json.loads(run([node(), "-e", script], KIT))
    assert set(ERRORS) | {"offline", "not_configured", "server_error"} == set(words)
    for code, text in words.items():
        assert text["zh"] and text["en"] and text["action"] in (
            "buy", "enter_key", "restore", "retry", "refresh", "contact_support", "none"), code
    # Never a message that blames something else (the extension's own old words for any failure).
    assert not any("Podman" in t["en"] or "Podman" in t["zh"] for t in words.values())


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

SAMPLE_KEY = "eyJ0eXAiOiJsaWNlbnNlIiwiaWQiOiJsaWMtMSIsImNvdXJzZUlkIjoiY3BwLXByaW1lci01dGgiLCJwbGFuIjoib25lX3RpbWUifQ==|c2lnbmF0dXJl"
LICENSED = {"id": "lic-1", "course_id": "cpp-primer-5th", "course_title": "C++ Primer 第5版",
            "expires_at": "2126-01-01T00:00:00.000Z", "lifetime": True}
PURCHASES = [
    {"order_id": "ord_1", "course_id": "cpp-primer-5th", "course_title": "C++ Primer 第5版", "amount_fen": 9900,
     "status": "fulfilled", "created_at": "2026-12-01T06:00:00Z",
     "license": {"id": "lic-1", "state": "active", "expires_at": "2126-01-01T00:00:00.000Z", "key": SAMPLE_KEY,
                 "lifetime": True}},
    {"order_id": "LB-old", "course_id": "rust-monthly", "course_title": "Rust 每月一课", "amount_fen": 2900,
     "status": "refunded", "created_at": "2026-11-01T06:00:00Z",
     "license": {"id": "lic-0", "state": "revoked", "expires_at": "2026-01-01T00:00:00.000Z", "key": None,
                 "lifetime": False}},
]

# What VS Code sets on a webview for each theme: the colour registry's defaults (vs/platform/theme/common/colors)
# for Light+ (light), Dark+ (dark) and High Contrast (hcDark). A variable the theme leaves unset is absent.
THEMES: dict[str, dict[str, str]] = {
    "light": {"foreground": "#616161", "editor-background": "#ffffff", "editor-foreground": "#000000",
              "descriptionForeground": "#717171", "button-background": "#007acc", "button-foreground": "#ffffff",
              "button-secondaryBackground": "#5f6a79", "button-secondaryForeground": "#ffffff",
              "inputValidation-errorBackground": "#f2dede", "inputValidation-errorBorder": "#be1100",
              "inputValidation-infoBackground": "#d6ecf2", "inputValidation-infoBorder": "#007acc",
              "input-background": "#ffffff", "input-foreground": "#616161", "textBlockQuote-background": "#7f7f7f1a",
              "textBlockQuote-border": "#007acc80", "panel-border": "#80808059", "focusBorder": "#0090f1",
              "textLink-foreground": "#006ab1"},
    "dark": {"foreground": "#cccccc", "editor-background": "#1e1e1e", "editor-foreground": "#d4d4d4",
             "descriptionForeground": "#ccccccb3", "button-background": "#0e639c", "button-foreground": "#ffffff",
             "button-secondaryBackground": "#3a3d41", "button-secondaryForeground": "#ffffff",
             "inputValidation-errorBackground": "#5a1d1d", "inputValidation-errorBorder": "#be1100",
             "inputValidation-infoBackground": "#063b49", "inputValidation-infoBorder": "#007acc",
             "input-background": "#3c3c3c", "input-foreground": "#cccccc", "textBlockQuote-background": "#7f7f7f1a",
             "textBlockQuote-border": "#007acc80", "panel-border": "#80808059", "focusBorder": "#007fd4",
             "textLink-foreground": "#3794ff"},
    "high-contrast": {"foreground": "#ffffff", "editor-background": "#000000", "editor-foreground": "#ffffff",
                      "descriptionForeground": "#ffffffb3", "button-background": "#000000", "button-foreground": "#ffffff",
                      "button-border": "#6fc3df", "button-secondaryForeground": "#ffffff",
                      "inputValidation-errorBackground": "#000000", "inputValidation-errorBorder": "#6fc3df",
                      "inputValidation-infoBackground": "#000000", "inputValidation-infoBorder": "#6fc3df",
                      "input-background": "#000000", "input-foreground": "#ffffff", "input-border": "#6fc3df",
                      "panel-border": "#6fc3df", "focusBorder": "#f38518", "contrastBorder": "#6fc3df",
                      "textLink-foreground": "#21a6ff"},
}

# Every piece of text on the page against what it is drawn on (backgrounds composited up to the canvas).
CONTRAST_PROBE = """
() => {
  const rgba = (text) => { const m = text.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const over = (top, below) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + below[i] * (1 - a)).concat(1); };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                       return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const background = (node) => {
    const layers = [];
    for (let e = node; e; e = e.parentElement) layers.push(rgba(getComputedStyle(e).backgroundColor));
    return layers.reverse().reduce((below, top) => over(top, below), [255, 255, 255, 1]);
  };
  const out = [];
  for (const node of document.querySelectorAll('body *')) {
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim())
      || ((node.tagName === 'INPUT' || node.tagName === 'TEXTAREA') && node.value);
    const box = node.getBoundingClientRect();
    if (!own || box.width === 0 || box.height === 0 || ['SCRIPT', 'STYLE'].includes(node.tagName)) continue;
    const bg = background(node);
    const fg = over(rgba(getComputedStyle(node).color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push({ text: (node.value || node.textContent).trim().slice(0, 40), tag: node.tagName, ratio: (hi + 0.05) / (lo + 0.05) });
  }
  return out;
}
"""


def theme_variables(theme: str) -> str:
    return "".join(f"--vscode-{name}: {value}; " for name, value in THEMES[theme].items())


def open_panel_page(browser: Any, built: Path, theme: str | None) -> Any:
    """The panel's page in Chromium as VS Code hosts it: the theme's variables on <html>, acquireVsCodeApi."""
    page = browser.new_page(viewport={"width": 520, "height": 760}, locale="zh-CN")
    page.add_init_script(CSP_PROBE)
    html = page_html(built)
    if theme is not None:
        # VS Code puts the theme's variables on the page's <html> element as its style attribute.
        html = html.replace('<html lang="zh-CN">', f'<html lang="zh-CN" style="{theme_variables(theme)}">', 1)
    page.route("https://webview.test/", lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto("https://webview.test/")
    page.wait_for_function("window.__sent.length > 0")
    return page


# A message event is dispatched later, as a task of its own, so waiting for the posted state's phase
# passed at once when the panel was already in that phase, and the test read the page before the
# panel drew the new state. The panel draws in its own message listener, added when it loaded, and
# listeners run in the order they were added: one added now runs after the panel has drawn.
POST_STATE = """(s) => new Promise((drawn) => {
  window.addEventListener("message", () => drawn(), {once: true});
  window.postMessage(s, "*");
})"""


def post_state(page: Any, state: dict[str, Any]) -> None:
    """Hand the panel a state as the extension does (postMessage); return once the panel has drawn it."""
    page.evaluate(POST_STATE, state)
    assert page.get_attribute("#app", "data-phase") == state["phase"]


def page_html(built: Path) -> str:
    script = ("const { pageHtml } = require('./out/webview.js');"
              "process.stdout.write(pageHtml({ nonce: 'test-nonce-123', cspSource: 'vscode-webview://fake' }));")
    return run([node(), "-e", script], KIT)


@pytest.mark.browser
def test_the_panel_page_draws_every_state_in_chromium(built: Path, server: RunningServer, browser: Any) -> None:
    course = next(c for c in requests.get(server.base + "/api/v1/courses", timeout=10).json()["courses"]
                  if c["id"] == "cpp-primer-5th")
    order = requests.post(server.base + "/api/v1/orders", json={"course_id": "cpp-primer-5th"}, timeout=10).json()
    base: dict[str, Any] = {"course": course, "order": None, "error": None, "license": None, "purchases": None}
    waiting = {**base, "phase": "waiting", "order": {k: order[k] for k in
                                                     ("order_id", "amount_fen", "qr_svg", "expires_at", "status")}}
    page = browser.new_page(viewport={"width": 480, "height": 760}, locale="zh-CN")
    page.add_init_script(CSP_PROBE)
    html = page_html(built)
    # VS Code serves the page from its own origin; a routed address stands in for it.
    page.route("https://webview.test/", lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto("https://webview.test/")
    page.wait_for_function("window.__sent.length > 0")
    assert page.evaluate("window.__sent") == [{"type": "ready"}]

    def post(state: dict[str, Any]) -> None:
        post_state(page, state)

    post({**base, "phase": "ready"})
    assert page.text_content("#course-title") == "C++ Primer 第5版"
    assert page.text_content("#price") == "¥99.00"
    shot(page, "vscode-buy.png")
    page.click("#buy")
    assert page.evaluate("window.__sent.at(-1)") == {"type": "buy", "email": "", "code": ""}
    page.fill("#email", "learner@example.com")
    page.fill("#code", "kit20")
    page.click("#buy")
    assert page.evaluate("window.__sent.at(-1)") == {"type": "buy", "email": "learner@example.com", "code": "kit20"}

    # A refused code: the form again, what was typed in it, the reason in both languages.
    wrong = CATALOGUE["code_wrong_course"]
    post({**base, "phase": "ready", "entered": {"email": "learner@example.com", "code": "rustonly"},
          "error": {"code": "code_wrong_course", "message_zh": wrong.message_zh, "message_en": wrong.message_en,
                    "action": wrong.action}})
    assert page.input_value("#code") == "rustonly" and page.input_value("#email") == "learner@example.com"
    assert page.get_attribute("#code", "aria-invalid") == "true"
    assert page.text_content("#error-zh") == wrong.message_zh and page.text_content("#error-en") == wrong.message_en
    assert "检查优惠码" in page.text_content("#error-action")  # the learner's next step, not "update the extension"
    shot(page, "vscode-code-refused.png")

    post(waiting)
    page.wait_for_function("document.getElementById('qr').naturalWidth > 0")
    assert "¥99.00" in page.text_content("body") and page.locator("#breakdown").count() == 0
    countdown = page.text_content("#countdown")
    assert "后过期" in countdown and "QR expires in" in countdown
    assert page.get_attribute("#status", "data-status") == "pending"
    shot(page, "vscode-qr.png")
    # With a discount code: list price, discount and what is paid.
    page.evaluate("(s) => window.postMessage(s, '*')", {**waiting, "order": {
        **waiting["order"], "amount_fen": 7920, "list_price_fen": 9900, "discount_fen": 1980}})
    page.wait_for_selector("#breakdown")
    assert page.text_content("#breakdown") == "原价 List ¥99.00 · 优惠 Discount −¥19.80 · 实付 Paid ¥79.20"
    shot(page, "vscode-code-qr.png")

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

    post({**base, "phase": "licensed", "license": LICENSED})
    assert "许可证已激活" in page.text_content("#licensed")
    assert page.text_content("#license-until") == "永久 · Lifetime"  # never "Valid until 2126"
    shot(page, "vscode-licensed.png")
    page.click("#open-course")
    assert page.evaluate("window.__sent.at(-1)") == {"type": "openCourse", "courseId": "cpp-primer-5th"}

    post({**base, "phase": "purchases", "purchases": [
        {**PURCHASES[0], "order_id": order["order_id"], "created_at": order["created_at"]}, PURCHASES[1]]})
    assert page.locator("button.restore").count() == 1
    assert page.text_content(".row .title") == "C++ Primer 第5版"
    assert page.text_content(".row .until") == "永久 · Lifetime"
    assert page.input_value("textarea.key") == SAMPLE_KEY
    shot(page, "vscode-purchases.png")
    page.click("button.restore")
    assert page.evaluate("window.__sent.at(-1)") == {"type": "restore", "licenseId": "lic-1"}
    page.click("button.copy")
    assert page.evaluate("window.__sent.at(-1)") == {"type": "copy", "licenseId": "lic-1"}

    post({**base, "phase": "restore", "restore": {"sent": False, "email": ""}})
    page.fill("#restore-email", "learner@example.com")
    page.click("#resend")
    assert page.evaluate("window.__sent.at(-1)") == {"type": "resend", "email": "learner@example.com"}
    post({**base, "phase": "restore", "restore": {"sent": True, "email": "learner@example.com"}})
    assert "learner@example.com" in page.text_content("#restore-sent")
    page.click("#enter-key")
    assert page.evaluate("window.__sent.at(-1)") == {"type": "enterKey"}
    assert page.evaluate("window.__cspViolations") == []


def panel_states(server: RunningServer) -> dict[str, dict[str, Any]]:
    """One state of every kind the panel draws, with a real order's QR from the server."""
    course = next(c for c in requests.get(server.base + "/api/v1/courses", timeout=10).json()["courses"]
                  if c["id"] == "cpp-primer-5th")
    order = requests.post(server.base + "/api/v1/orders", json={"course_id": "cpp-primer-5th"}, timeout=10).json()
    base: dict[str, Any] = {"course": course, "order": None, "error": None, "license": None, "purchases": None,
                            "restore": None, "notice": None}
    shown = {k: order[k] for k in ("order_id", "amount_fen", "qr_svg", "expires_at", "status")}
    error = CATALOGUE["wechat_unavailable"]
    return {
        "buy": {**base, "phase": "ready"},
        "qr": {**base, "phase": "waiting", "order": {**shown, "email_given": True},
               "error": {"code": "payment_failed", "message_zh": CATALOGUE["payment_failed"].message_zh,
                         "message_en": CATALOGUE["payment_failed"].message_en, "action": "retry"}},
        "failed": {**base, "phase": "failed", "order": shown, "error": {
            "code": "wechat_unavailable", "message_zh": error.message_zh, "message_en": error.message_en,
            "action": error.action}},
        "licensed": {**base, "phase": "licensed", "order": shown, "license": LICENSED},
        "purchases": {**base, "phase": "purchases", "purchases": PURCHASES,
                      "notice": {"zh": "许可证密钥已复制。", "en": "The license key is copied."}},
        "restore": {**base, "phase": "restore", "restore": {"sent": False, "email": ""}},
        "restore-sent": {**base, "phase": "restore", "restore": {"sent": True, "email": "learner@example.com"}},
    }


@pytest.mark.browser
def test_the_panel_takes_its_colours_from_the_theme_with_readable_text(built: Path, server: RunningServer, browser: Any) -> None:
    states = panel_states(server)
    assert "#07c160" not in page_html(built) and "#fff;" not in page_html(built).replace(" ", "")
    for theme in THEMES:
        page = open_panel_page(browser, built, theme)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == {"light": "rgb(255, 255, 255)", "dark": "rgb(30, 30, 30)",
                              "high-contrast": "rgb(0, 0, 0)"}[theme]
        for name, state in states.items():
            post_state(page, state)
            if state["phase"] == "waiting":
                page.wait_for_function("document.getElementById('qr').naturalWidth > 0")
            texts = page.evaluate(CONTRAST_PROBE)
            assert len(texts) >= 4, (theme, name, texts)
            poor = [t for t in texts if t["ratio"] < 4.5]
            assert not poor, f"{theme} {name}: text under 4.5:1: {poor}"
            if theme in ("light", "dark") and name in ("buy", "licensed", "purchases", "restore-sent", "qr"):
                shot(page, f"vscode-panel-{name}-{theme}.png")
        assert page.evaluate("window.__cspViolations") == []
        page.close()


# --- pictures of "My courses" and an opened paid file ----------------------------------------------

# Light+ and Dark+ workbench and token colours, for an HTML picture of what the fake vscode holds.
WORKBENCH = {
    "light": {"sidebar": "#f3f3f3", "sidebar-fg": "#616161", "editor": "#ffffff", "editor-fg": "#000000",
              "tab": "#ececec", "title": "#dddddd", "activity": "#2c2c2c", "desc": "#717171", "lines": "#237893",
              "keyword": "#0000ff", "string": "#a31515", "preprocessor": "#0000ff", "comment": "#008000",
              "type": "#267f99", "number": "#098658", "lock": "#a1260d", "select": "#e4e6f1"},
    "dark": {"sidebar": "#252526", "sidebar-fg": "#cccccc", "editor": "#1e1e1e", "editor-fg": "#d4d4d4",
             "tab": "#2d2d2d", "title": "#3c3c3c", "activity": "#333333", "desc": "#a8a8a8", "lines": "#858585",
             "keyword": "#569cd6", "string": "#ce9178", "preprocessor": "#c586c0", "comment": "#6a9955",
             "type": "#4ec9b0", "number": "#b5cea8", "lock": "#f48771", "select": "#37373d"},
}
ICONS = {  # small line drawings in the spirit of the codicons the kit names
    "lock": '<rect x="3" y="7" width="10" height="7" rx="1"/><path d="M5 7V5a3 3 0 0 1 6 0v2"/>',
    "book": '<path d="M2 3h5a1 1 0 0 1 1 1v9a1 1 0 0 0-1-1H2zM14 3H9a1 1 0 0 0-1 1v9a1 1 0 0 1 1-1h5z"/>',
    "folder": '<path d="M1.5 3.5h5l1.5 1.5h6.5v8h-13z"/>',
    "file": '<path d="M3.5 1.5h6l3 3v10h-9z"/><path d="M9.5 1.5v3h3"/>',
}
CPP_TOKENS = re.compile(r'(?P<comment>//[^\n]*)|(?P<preprocessor>#\w+)|(?P<string>"(?:[^"\\]|\\.)*"|<[\w.]+>)'
                        r'|(?P<keyword>\b(?:int|return|void|const|auto|namespace|using)\b)|(?P<type>\bstd\b)|(?P<number>\b\d+\b)')


def highlight(code: str) -> str:
    """C++ source as HTML spans with the token classes a theme colours (keywords, strings, …)."""
    out, last = [], 0
    for m in CPP_TOKENS.finditer(code):
        out.append(html.escape(code[last:m.start()]))
        out.append(f'<span class="{m.lastgroup}">{html.escape(m.group())}</span>')
        last = m.end()
    out.append(html.escape(code[last:]))
    return "".join(out)


def workbench_html(snapshot: dict[str, Any], theme: str) -> str:
    c = WORKBENCH[theme]
    rows = []
    for row in snapshot["rows"]:
        icon = row["icon"] or ("folder" if row["folder"] else "file")
        chevron = "›" if row["folder"] else ""
        locked = row["icon"] == "lock"
        rows.append(
            f'<div class="row{" locked" if locked else ""}" style="padding-left:{8 + 14 * row["level"]}px">'
            f'<span class="chev">{chevron}</span><svg viewBox="0 0 16 16" class="icon {icon}">{ICONS.get(icon, ICONS["file"])}</svg>'
            f'<span class="label">{html.escape(row["label"])}</span>'
            f'<span class="desc">{html.escape(row["description"] or "")}</span></div>')
    lines = snapshot["file"]["text"].rstrip("\n").split("\n")
    numbers = "\n".join(str(i + 1) for i in range(len(lines)))
    uri = snapshot["file"]["uri"]
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><style>
  body {{ margin: 0; font: 13px system-ui, "Noto Sans CJK SC", sans-serif; background: {c['editor']}; }}
  .title {{ background: {c['title']}; color: {c['sidebar-fg']}; text-align: center; padding: 6px; font-size: 12px; }}
  .window {{ display: grid; grid-template-columns: 48px 340px 1fr; height: 520px; }}
  .activity {{ background: {c['activity']}; }}
  .sidebar {{ background: {c['sidebar']}; color: {c['sidebar-fg']}; overflow: hidden; }}
  .header {{ font-size: 11px; font-weight: 600; padding: 10px 12px 6px; letter-spacing: .04em; }}
  .row {{ display: flex; align-items: center; height: 22px; gap: 4px; white-space: nowrap; }}
  .row:nth-child(5) {{ background: {c['select']}; }}
  .chev {{ width: 10px; display: inline-block; transform: rotate(90deg); }}
  .icon {{ width: 16px; height: 16px; fill: none; stroke: currentColor; stroke-width: 1.2; flex: none; }}
  .icon.lock {{ color: {c['lock']}; }}
  .desc {{ color: {c['desc']}; font-size: 12px; margin-left: 6px; }}
  .editor {{ background: {c['editor']}; color: {c['editor-fg']}; }}
  .tabs {{ background: {c['tab']}; display: flex; }}
  .tab {{ background: {c['editor']}; color: {c['editor-fg']}; padding: 8px 14px; border-top: 1px solid #007acc; }}
  .crumbs {{ color: {c['desc']}; padding: 4px 14px; font-size: 12px; }}
  .code {{ display: grid; grid-template-columns: 40px 1fr; font: 14px/20px "DejaVu Sans Mono", monospace; padding-top: 6px; }}
  .code pre {{ margin: 0; }}
  .numbers {{ color: {c['lines']}; text-align: right; padding-right: 14px; }}
  .keyword {{ color: {c['keyword']}; }} .string {{ color: {c['string']}; }} .preprocessor {{ color: {c['preprocessor']}; }}
  .comment {{ color: {c['comment']}; }} .type {{ color: {c['type']}; }} .number {{ color: {c['number']}; }}
  .note {{ color: {c['desc']}; background: {c['editor']}; font-size: 11px; padding: 6px 12px; }}
</style></head><body>
<div class="title">hello.cpp — {html.escape(uri)} (只读 · read-only)</div>
<div class="window">
  <div class="activity"></div>
  <div class="sidebar" id="tree"><div class="header">{html.escape(snapshot['view']['title'].upper())}</div>{''.join(rows)}</div>
  <div class="editor" id="file">
    <div class="tabs"><div class="tab">hello.cpp</div></div>
    <div class="crumbs">{html.escape(uri)}</div>
    <div class="code"><pre class="numbers">{numbers}</pre><pre>{highlight(snapshot['file']['text'])}</pre></div>
  </div>
</div>
<div class="note">HTML picture of what the kit handed the test's fake vscode (its TreeItems and the file it read through
learningbuddy:), in Light+/Dark+ colours: not a screenshot of VS Code itself.</div>
</body></html>"""


@pytest.mark.browser
def test_pictures_of_my_courses_and_an_opened_paid_file(built: Path, server: RunningServer, folder: Path,
                                                       tmp_path: Path, browser: Any) -> None:
    out = tmp_path / "snapshot.json"
    run([node(), "test/snapshot.live.js", str(out)], KIT, env=node_env(server, folder))
    snapshot = json.loads(out.read_text())
    rows = {row["id"]: row for row in snapshot["rows"]}
    # What the learner sees after buying C++ Primer: it is open, Rust's paid lessons are locked with "Buy".
    assert rows["cpp-primer-5th"]["icon"] == "book" and rows["rust-monthly"]["icon"] == "lock"
    assert rows["cpp-primer-5th/ch01/hello.cpp"]["command"] == "vscode.open"
    assert rows["rust-monthly/lesson1/main.rs"]["icon"] == "lock"
    assert rows["rust-monthly/lesson1/main.rs"]["command"] == "lbpay.buyWithWeChatPay"
    assert rows["rust-monthly/free/intro.md"]["command"] == "vscode.open"
    assert snapshot["file"]["text"].encode() == COURSE_FILES["cpp-primer-5th/ch01/hello.cpp"]
    for theme in WORKBENCH:
        page = browser.new_page(viewport={"width": 980, "height": 580}, locale="zh-CN")
        page.set_content(workbench_html(snapshot, theme))
        assert "你好, C++ Primer!" in page.text_content("#file")
        assert page.locator("#tree .row.locked").count() == sum(1 for r in snapshot["rows"] if r["icon"] == "lock")
        shot(page, f"vscode-courses-and-file-{theme}.png")
        page.close()
