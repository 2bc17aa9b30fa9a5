"""apply.sh on our stand-in extension (stray .js files beside src/, no keyring): it builds twice, changes nothing
on a second run, prints a patch that applies, and the compiled extension activates with or without keys."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from servers import ROOT, public_pem

from licensing import key_id

KIT = ROOT / "clients" / "vscode"
STANDIN = ROOT / "tests" / "vscode_standin"
FAKE_VSCODE = ROOT / "tests" / "real_extension" / "vscode.js"
TSC = KIT / "node_modules" / ".bin" / "tsc"
STRAY = ("build-buddy.js", "jest.config.js", "dev-tools/generate-extension.js", "media/script.js")
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing answers, as a server that is down


def run(args: list[str], cwd: Path, timeout: int = 300, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, input=input)


def ok(args: list[str], cwd: Path, input: str | None = None) -> str:
    done = run(args, cwd, input=input)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] not in ("node_modules", "out")}


def standin(tmp: Path) -> Path:
    if not TSC.is_file():
        pytest.fail("clients/vscode/node_modules is missing: `make test-long` runs npm ci for the kit")
    ext = tmp / "extension"
    shutil.copytree(STANDIN, ext, ignore=shutil.ignore_patterns("out", "node_modules"))
    (ext / "node_modules").symlink_to(KIT / "node_modules")
    return ext


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stand-in after apply.sh twice, the printed patch applied, and `tsc -p .` twice."""
    ext = standin(tmp_path_factory.mktemp("standin"))
    assert all((ext / f).is_file() for f in STRAY) and not (ext / "licence-keys" / "keyring.json").exists()
    printed = ok(["sh", str(KIT / "apply.sh"), "--server", CLOSED, str(ext)], ROOT)
    first = digest(ext)
    ok(["sh", str(KIT / "apply.sh"), str(ext)], ROOT)  # the server given before is kept
    second = digest(ext)
    patch = ok(["sh", str(KIT / "apply.sh"), "--print-patch", str(ext)], ROOT)
    applied = ok(["patch", "-p1", "--forward", "--no-backup-if-mismatch"], ext, input=patch)
    again = ok(["sh", str(KIT / "apply.sh"), "--print-patch", str(ext)], ROOT)
    builds = [run([str(TSC), "-p", "."], ext) for _ in range(2)]
    return {"ext": ext, "printed": printed, "first": first, "second": second, "patch": patch, "applied": applied,
            "again": again, "builds": builds}


def test_the_stand_in_breaks_the_build_the_way_the_real_extension_did(tmp_path: Path) -> None:
    # What apply.sh used to do (allowJs, no `include`): tsc takes the build scripts, jest.config.js and media/.
    ext = standin(tmp_path)
    assert run([str(TSC), "-p", "."], ext).returncode == 0  # the stand-in builds on its own
    tsconfig = json.loads((ext / "tsconfig.json").read_text())
    tsconfig["compilerOptions"]["allowJs"] = True
    (ext / "tsconfig.json").write_text(json.dumps(tsconfig))
    broken = run([str(TSC), "-p", "."], ext)
    assert broken.returncode != 0 and "TS6059" in broken.stdout and "build-buddy.js" in broken.stdout, broken.stdout


def test_apply_sh_leaves_an_extension_that_builds_twice_and_compiles_src_only(applied: dict[str, Any]) -> None:
    ext: Path = applied["ext"]
    for build in applied["builds"]:
        assert build.returncode == 0, build.stdout + build.stderr
    tsconfig = json.loads((ext / "tsconfig.json").read_text())
    assert tsconfig["include"] == ["src"] and tsconfig["compilerOptions"]["allowJs"] is True
    built = sorted(str(p.relative_to(ext / "out")) for p in (ext / "out").rglob("*.js"))
    assert {"extension.js", "lbpayWiring.js", "lbpay/index.js", "lbpay/payClient.js"} <= set(built)
    assert not any(name.startswith(("build-buddy", "jest.config", "dev-tools", "media", "out/")) for name in built), built


def test_a_second_apply_sh_changes_nothing(applied: dict[str, Any]) -> None:
    assert applied["first"] == applied["second"]
    assert f"server {CLOSED}, course cpp-primer-5th" in applied["printed"]
    assert "Keys: none yet" in applied["printed"] and "--print-patch" in applied["printed"]
    package = json.loads((applied["ext"] / "package.json").read_text())
    commands = [c["command"] for c in package["contributes"]["commands"]]
    assert commands[0] == "standin.openLicenseManager" and len(commands) == len(set(commands))
    assert {"lbpay.buyWithWeChatPay", "lbpay.myPurchases", "lbpay.enterLicenseKey"} <= set(commands)
    assert {"id": "lbpay.courses", "name": "My courses · 我的课程"} in package["contributes"]["views"]["standinBuddy"]
    assert "view/title" not in package["contributes"].get("menus", {})  # the host's own tests hold those to its view
    assert {"onUri", "onFileSystem:learningbuddy"} <= set(package["activationEvents"])
    assert "licence-keys/keyring.json" in package["files"] and "dependencies" not in package
    assert not (applied["ext"] / "licence-keys" / "private-key.txt").exists()


def test_the_printed_patch_makes_the_changes_the_guide_asks_for_and_applies(applied: dict[str, Any]) -> None:
    patch: str = applied["patch"]
    files = [line[len("+++ b/"):] for line in patch.splitlines() if line.startswith("+++ b/")]
    assert files == ["src/extension.ts", "src/license/types.ts", "src/courseContentProviderClient.ts",
                     "src/courseContentProtectionManager.ts"]
    added = "\n".join(line for line in patch.splitlines() if line.startswith("+"))
    for change in ("wireLearningBuddyPay(context, protectionManager);",  # the one call in activate()
                   "licenseKey = licenseKey.trim();",                    # trimmed keys
                   "...licenseFacts(licenseKey, licenseData),",          # courseId, kid, typ, plan kept
                   "void shareWithKit(licenseInfo.key);",                # a key it takes in opens the kit's files
                   "courseId?: string;", "kid?: string;", "typ?: string;", "plan?: string;",
                   "if (verificationResult.status) {",                   # no offline fallback after a 403
                   "const check = await checkLicenseOffline(licenseKey, courseId);",
                   "public async recheckStoredLicenses(): Promise<string[]> {",  # re-checked at start-up
                   "'Authorization': `Bearer ${licenseKey}`,",           # the key in a header, not the URL
                   "this.providerBaseUrl = PROVIDER_URL;"):
        assert change in added, change
    assert "patching file src/courseContentProtectionManager.ts" in applied["applied"]
    assert applied["again"] == ""  # nothing left to change: a second --print-patch prints nothing


def test_print_patch_names_what_it_cannot_place(tmp_path: Path) -> None:
    ext = standin(tmp_path)
    (ext / "src" / "courseContentProviderClient.ts").unlink()
    done = run(["sh", str(KIT / "apply.sh"), "--print-patch", str(ext)], ROOT)
    assert done.returncode == 1
    assert "src/courseContentProviderClient.ts: missing" in done.stderr and "+++ b/src/extension.ts" in done.stdout


def activate(ext: Path, machine: Path, steps: str) -> dict[str, Any]:
    """Activate the compiled stand-in in the headless `vscode` (tests/real_extension/vscode.js), run `steps`."""
    script = f"""
const fake = require({json.dumps(str(FAKE_VSCODE))});
fake.install();
console.log = console.warn = console.error = () => {{}};
(async () => {{
  const ext = require({json.dumps(str(ext / "out" / "extension.js"))});
  const context = fake.extensionContext({json.dumps(str(ext))}, {json.dumps(str(machine))}, 'lbpay-tests.standin-buddy');
  await ext.activate(context);
  const result = {{ commands: await fake.vscode.commands.getCommands(), trees: [...fake.treeViews.keys()],
    schemes: [...fake.fileSystems.keys()], uriHandlers: fake.uriHandlers.length }};
  {steps}
  result.shown = fake.shown;
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}})().catch((err) => {{ process.stderr.write(String(err && err.stack || err)); process.exit(1); }});
"""
    return dict(json.loads(ok(["node", "-e", script], ROOT)))


def test_without_a_keyring_the_extension_activates_and_buying_says_not_configured(applied: dict[str, Any],
                                                                                  tmp_path: Path) -> None:
    ext: Path = applied["ext"]
    package = json.loads((ext / "package.json").read_text())
    result = activate(ext, tmp_path / "machine", """
  await fake.vscode.commands.executeCommand('lbpay.buyWithWeChatPay');
  await fake.vscode.commands.executeCommand('lbpay.enterLicenseKey');
  fake.answers.input.push('  abc|def  ');
  result.own = await fake.vscode.commands.executeCommand('standin.openLicenseManager');
""")
    # Every command the kit put into package.json answers, the extension's own one works.
    assert {c["command"] for c in package["contributes"]["commands"]} <= set(result["commands"])
    assert result["own"]["publicKey"] > 0
    errors = [m["text"] for m in result["shown"] if m["level"] == "error"]
    assert len(errors) == 2 and all("not configured" in e and "尚未配置" in e for e in errors), errors
    assert result["trees"] == [] and result["schemes"] == []  # the kit itself was not started


def test_with_a_keyring_the_kit_starts_even_when_its_server_is_down(applied: dict[str, Any], tmp_path: Path) -> None:
    ext = tmp_path / "with-keys"
    shutil.copytree(applied["ext"], ext, symlinks=True)
    pair = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    keys = tmp_path / "keys" / "licence-keys"
    keys.mkdir(parents=True)
    (keys / "public-key.txt").write_bytes(public_pem(pair))
    (keys / "keyring.json").write_text(json.dumps({"keys": [{"kid": key_id(pair), "pem": public_pem(pair).decode(), "active": True}]}))
    ok(["sh", str(KIT / "apply.sh"), str(ext), str(tmp_path / "keys")], ROOT)
    result = activate(ext, tmp_path / "machine", """
  fake.answers.input.push('not a key');
  result.entered = await fake.vscode.commands.executeCommand('lbpay.enterLicenseKey');
  fake.answers.input.push('abc|def');
  result.own = await fake.vscode.commands.executeCommand('standin.openLicenseManager');
""")
    assert "lbpay.courses" in result["trees"] and result["schemes"] == ["learningbuddy"] and result["uriHandlers"] == 1
    assert result["entered"]["code"] == "invalid"
    assert result["own"]["publicKey"] > 0 and result["own"]["licenses"] == 0  # the patched check refused 'abc|def'
    assert not any("not configured" in m["text"] for m in result["shown"]), result["shown"]


def test_the_guide_shows_the_wiring_apply_sh_writes() -> None:
    guide = (KIT / "INTEGRATION.md").read_text()
    start = guide.index("```ts\n// src/lbpayWiring.ts\n") + len("```ts\n")
    assert guide[start:guide.index("```", start)] == (KIT / "scripts" / "lbpayWiring.ts").read_text()


def test_make_test_real_extension_without_ext_says_how_to_get_it() -> None:
    done = run([sys.executable, str(ROOT / "tests" / "real_extension" / "run.py")], ROOT)
    assert done.returncode == 0, done.stderr
    assert "git clone --bare https://github.com/terminail/learning-buddy.git" in done.stdout
    assert "EXT=" in done.stdout
