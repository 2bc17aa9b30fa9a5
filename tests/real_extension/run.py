"""`make test-real-extension EXT=...`: the kit on the real extension, terminail/learning-buddy's learning-primer-buddy.

A copy of it gets: its own jest suite (the baseline), apply.sh with keys from our server, the printed patch
applied as its maintainer would, npm ci, its own `tsc -p .` twice, jest again (no test that passed before may
fail), `vsce ls`, then a headless drive of the compiled extension in a fake `vscode` against our app in
sandbox mode with a real SMTP server (tests/real_extension/drive.js). Prints every step; exits 1 on the first
that fails. EXT is the repository (a bare git directory or a checkout) or the learning-primer-buddy folder.

usage: python tests/real_extension/run.py EXT [--work DIR]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

KIT = ROOT / "clients" / "vscode"
FOLDER = "learning-primer-buddy"
VSCE = "@vscode/vsce@3.7.0"  # pinned: the version the extension's own package-lock.json holds
COURSES = (("courses", "add", "cpp-primer-5th", "--title", "C++ Primer 第5版", "--price-fen", "9900"),
           ("courses", "add", "rust-monthly", "--title", "Rust 每月一课", "--price-fen", "2900",
            "--subscription", "--period-days", "30"))
HOW_TO_GET = """\
make test-real-extension needs the Learning Buddy extension (terminail/learning-buddy, GPL-2.0), which this
repository does not carry. Get it, then name it with EXT:

  git clone --bare https://github.com/terminail/learning-buddy.git /tmp/learning-buddy.git
  make test-real-extension EXT=/tmp/learning-buddy.git

EXT may be that bare git directory, a checkout of the repository, or its learning-primer-buddy/ folder.
It needs node and npm, and the npm registry for `npm ci` and vsce ({vsce}).
""".format(vsce=VSCE)


class Failed(Exception):
    """A step that did not do what it must."""


def title(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    print("$ " + " ".join(args), flush=True)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise Failed(f"{' '.join(args)} exited {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}")
    return done


def export(source: Path, into: Path) -> Path:
    """Copy learning-primer-buddy/ out of EXT (git directory, checkout or the folder) into `into`."""
    bare = subprocess.run(["git", "-C", str(source), "rev-parse", "--is-bare-repository"], capture_output=True, text=True)
    if bare.returncode == 0 and bare.stdout.strip() == "true":
        commit = run(["git", "-C", str(source), "log", "-1", "--format=%H %cs %s"], into).stdout.strip()
        print(f"  {source} at {commit}")
        archive = subprocess.run(["git", "-C", str(source), "archive", "HEAD", FOLDER], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
        return into / FOLDER
    folder = source / FOLDER if (source / FOLDER / "package.json").is_file() else source
    package = folder / "package.json"
    if not package.is_file() or json.loads(package.read_text()).get("name") != FOLDER:
        raise Failed(f"{source} is neither a git directory of terminail/learning-buddy nor its {FOLDER}/ folder")
    shutil.copytree(folder, into / FOLDER, ignore=shutil.ignore_patterns("node_modules", "out", "coverage", ".git"))
    return into / FOLDER


def npm_env() -> dict[str, str]:
    # Its playwright devDependency would download a browser at install: nothing but the registry is fetched.
    return {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "npm_config_audit": "false", "npm_config_fund": "false"}


def jest(ext: Path, name: str, work: Path) -> dict[str, str]:
    """Run the extension's own jest suite; every test's status by file and full name."""
    out = work / f"jest-{name}.json"
    done = run(["npx", "--no-install", "jest", "--ci", "--json", f"--outputFile={out}"], ext, env=npm_env(), check=False)
    if not out.is_file():
        raise Failed(f"jest wrote no report:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    report = json.loads(out.read_text())
    results = {f"{Path(s['name']).relative_to(ext)} > {t['fullName']}": t["status"]
               for s in report["testResults"] for t in s["assertionResults"]}
    broken = [Path(s["name"]).relative_to(ext) for s in report["testResults"] if not s["assertionResults"]]
    print(f"  {report['numPassedTests']} passed, {report['numFailedTests']} failed, {report['numTotalTests']} tests; "
          f"suites: {report['numPassedTestSuites']} passed, {report['numFailedTestSuites']} failed"
          + (f" ({len(broken)} without a test: {', '.join(map(str, broken))})" if broken else ""))
    return results


def tree_digest(ext: Path) -> dict[str, str]:
    """Every file of the extension but node_modules/, out/ and coverage/, with its SHA-256."""
    found: dict[str, str] = {}
    for path in sorted(ext.rglob("*")):
        rel = path.relative_to(ext)
        if rel.parts[0] in ("node_modules", "out", "coverage") or not path.is_file():
            continue
        found[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def write_content(content: Path) -> None:
    """The courses' files on the server: a free README, a paid header and a paid binary."""
    course = content / "cpp-primer-5th"
    (course / "free").mkdir(parents=True)
    (course / "ch07").mkdir()
    (course / "README.md").write_text("# C++ Primer 第5版\n\n从第 7 章开始：类。\n")
    (course / "free" / "README.md").write_text("# 免费试读 · Free preview\n\nChapter 1, free for everyone.\n")
    (course / "ch07" / "Sales_data.h").write_text(
        "#ifndef SALES_DATA_H\n#define SALES_DATA_H\n#include <string>\n\n"
        "struct Sales_data {\n    std::string bookNo;\n    unsigned units_sold = 0;\n    double revenue = 0.0;\n};\n\n#endif\n")
    (course / "ch07" / "diagram.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8 + b"\x00\xff" * 100)
    other = content / "rust-monthly" / "free"
    other.mkdir(parents=True)
    (other / "README.md").write_text("# Rust 每月一课\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ext", nargs="?", default="")
    parser.add_argument("--work", help="keep everything in this folder (default: a temporary one, removed)")
    options = parser.parse_args()
    if not options.ext:
        print(HOW_TO_GET)
        return 0
    source = Path(options.ext).resolve()
    work = Path(options.work).resolve() if options.work else Path(tempfile.mkdtemp(prefix="lbpay-real-ext-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        steps(source, work)
    except Failed as exc:
        print(f"\nFAILED: {exc}", flush=True)
        return 1
    finally:
        if not options.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmake test-real-extension: every step passed in {time.monotonic() - started:.0f} s")
    return 0


def steps(source: Path, work: Path) -> None:
    from learner_helpers import SmtpServer
    from servers import LBPAY, sandbox_mode_server

    title(f"1. copy {FOLDER} from {source}")
    ext = export(source, work)
    print(f"  {ext}: {sum(1 for _ in ext.rglob('*') if _.is_file())} files; node {run(['node', '--version'], ext).stdout.strip()}, "
          f"npm {run(['npm', '--version'], ext).stdout.strip()}")

    title("2. its own jest suite, before the kit (the baseline)")
    run(["npm", "ci"], ext, env=npm_env())
    before = jest(ext, "before", work)

    title("3. our server in sandbox mode, a real SMTP server, the keys it signs with")
    maildir = work / "mail"
    maildir.mkdir()
    smtp = SmtpServer()
    original = smtp.inbox.handle_DATA

    async def keep(server: Any, session: Any, envelope: Any) -> str:
        answer = await original(server, session, envelope)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(("plain",))
        text = str(body.get_content()) if body is not None else ""
        name = f"{time.time_ns()}.json"
        (maildir / (name + ".tmp")).write_text(json.dumps({"to": str(message["To"]), "subject": str(message["Subject"]), "text": text}))
        (maildir / (name + ".tmp")).rename(maildir / name)
        return answer

    smtp.inbox.handle_DATA = keep  # type: ignore[method-assign]
    smtp.start()
    server_folder = work / "server"
    server_folder.mkdir()
    try:
        with sandbox_mode_server(server_folder, COURSES, settings={
                "SMTP_URL": smtp.url, "MAIL_FROM": "Learning Buddy <courses@learning-buddy.test>"}) as server:
            write_content(server_folder / "instance" / "content")
            keys = work / "keys"
            env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
            env.update(LBPAY_INSTANCE_PATH=str(server_folder / "instance"), LBPAY_PUBLIC_BASE_URL=server.base)
            run([*LBPAY, "keys", "export", "--sandbox-key", str(keys)], ROOT, env=env)
            print(f"  {server.base} (sandbox mode), SMTP on 127.0.0.1:{smtp.port}, keys in {keys}")
            with_kit(ext, keys, work, before, server.base, maildir, server_folder)
    finally:
        smtp.stop()


def with_kit(ext: Path, keys: Path, work: Path, before: dict[str, str], base: str, maildir: Path, server_folder: Path) -> None:
    apply = ["sh", str(KIT / "apply.sh")]
    title("4. apply.sh (the kit, its commands and view, tsconfig, keys), then the patch its maintainer reviews")
    print(run([*apply, str(ext), str(keys)], ROOT).stdout)
    patch = run([*apply, "--print-patch", str(ext)], ROOT).stdout
    if "+++ b/src/extension.ts" not in patch:
        raise Failed("--print-patch printed no change to src/extension.ts")
    print(patch)
    done = subprocess.run(["patch", "-p1", "--forward", "--no-backup-if-mismatch"], cwd=ext, input=patch,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise Failed(f"the printed patch does not apply:\n{done.stdout}\n{done.stderr}")
    print(done.stdout)

    title("5. idempotent: apply.sh again changes nothing, --print-patch prints nothing")
    first = tree_digest(ext)
    run([*apply, str(ext), str(keys)], ROOT)
    second = tree_digest(ext)
    if first != second:
        changed = sorted(k for k in set(first) | set(second) if first.get(k) != second.get(k))
        raise Failed(f"a second apply.sh changed {changed}")
    again = run([*apply, "--print-patch", str(ext)], ROOT).stdout
    if again:
        raise Failed(f"--print-patch after the patch still prints:\n{again}")
    print(f"  {len(first)} files, the same SHA-256 after the second run; the patch is empty")

    title("6. npm ci and its own `tsc -p .`, twice in a row")
    run(["npm", "ci"], ext, env=npm_env())
    for attempt in (1, 2):
        t0 = time.monotonic()
        run(["npx", "--no-install", "tsc", "-p", "."], ext)
        print(f"  build {attempt}: exit 0 in {time.monotonic() - t0:.1f} s")
    stray = [p for p in ("out/build-buddy.js", "out/jest.config.js", "out/dev-tools", "out/media", "out/out", "out/src")
             if (ext / p).exists()]
    if stray:
        raise Failed(f"tsc compiled files outside src/: {stray}")
    for built in ("out/extension.js", "out/lbpayWiring.js", "out/lbpay/index.js", "out/lbpay/payClient.js"):
        if not (ext / built).is_file():
            raise Failed(f"{built} was not built")
    print("  out/ holds src/ only: extension.js, lbpayWiring.js, lbpay/ (with payClient.js)")

    title("7. its own jest suite with the kit: no test that passed before fails")
    after = jest(ext, "after", work)
    lost = sorted(name for name, status in before.items() if status == "passed" and after.get(name) != "passed")
    gained = sorted(name for name, status in after.items() if status == "passed" and before.get(name) != "passed")
    if lost:
        raise Failed("tests that passed before fail now:\n  " + "\n  ".join(lost))
    print(f"  passed before and after: {sum(1 for s in before.values() if s == 'passed')}; newly failing: 0"
          + (f"; newly passing: {len(gained)}" if gained else ""))

    title(f"8. vsce ls ({VSCE}): what the package ships")
    listed = run(["npx", "--yes", VSCE, "ls"], ext, env=npm_env(), timeout=300).stdout.split()
    for wanted in ("out/extension.js", "out/lbpayWiring.js", "out/lbpay/index.js", "out/lbpay/payClient.js",
                   "licence-keys/keyring.json", "licence-keys/public-key.txt"):
        if wanted not in listed:
            raise Failed(f"vsce ls does not list {wanted}")
    if any("private-key" in f for f in listed):
        raise Failed("vsce ls lists the private key")
    print(f"  {len(listed)} files, among them out/extension.js, out/lbpayWiring.js, out/lbpay/*.js (with payClient.js), "
          "licence-keys/keyring.json; no private key")

    title(f"9. the server address into the build (apply.sh --server {base}), tsc, then the headless drive")
    run([*apply, "--server", base, str(ext), str(keys)], ROOT)
    wiring = (ext / "src" / "lbpayWiring.ts").read_text()
    if f"export const LBPAY_SERVER = '{base}';" not in wiring:
        raise Failed("apply.sh --server did not set LBPAY_SERVER")
    run(["npx", "--no-install", "tsc", "-p", "."], ext)
    env = {**os.environ, "EXT": str(ext), "LBPAY_BASE_URL": base, "MAILDIR": str(maildir), "WORK": str(work / "machines"),
           "CONTENT_DIR": str(server_folder / "instance" / "content"), "NO_PROXY": "127.0.0.1,localhost",
           "LBPAY_CREATOR": json.dumps([sys.executable, str(ROOT / "tests" / "node" / "creator.py")]),
           "LBPAY_REPO": str(ROOT), "PYTHONPATH": str(ROOT), "LBPAY_INSTANCE_PATH": str(server_folder / "instance"),
           "LBPAY_PUBLIC_BASE_URL": base}
    print("$ node tests/real_extension/drive.js", flush=True)
    drive = subprocess.run(["node", str(HERE / "drive.js")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    print(drive.stdout, end="")
    if drive.returncode != 0:
        console = work / "machines" / "extension-console.log"
        tail = console.read_text()[-6000:] if console.is_file() else ""
        raise Failed(f"the drive exited {drive.returncode}\n{drive.stderr[-8000:]}\n--- the extension's console (tail) ---\n{tail}")


if __name__ == "__main__":
    sys.exit(main())
