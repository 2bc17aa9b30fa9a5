"""One license verdict everywhere (issue 18, item 6): the server's verifier (licensing), the extension
client's (clients/extension/index.js) and the kit's (clients/vscode/src/license.ts) agree on every kind
of license: valid, expired, for another course, forged, under a stranger's key, another kind of document,
pasted with spaces, without an expiry or an id."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from test_license_node_interop import node

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from licensing import SigningKey, generate_private_key_pem, issue_license, sign_document, verify_license
from licensing.documents import signed_message

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "clients" / "vscode"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def kit_license_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """license.ts alone, compiled by the kit's pinned tsc into a folder of this test's own (no race
    with tests/test_vscode_kit.py, which builds the whole kit in clients/vscode/out)."""
    tsc = KIT / "node_modules" / "typescript" / "bin" / "tsc"
    if not tsc.is_file():
        pytest.fail("clients/vscode/node_modules is missing: run `make test-vscode` (it runs npm ci)")
    out = tmp_path_factory.mktemp("kit-license")
    done = subprocess.run([node(), str(tsc), "--outDir", str(out), "--module", "commonjs", "--target", "ES2020",
                           "--lib", "ES2020", "--strict", "--skipLibCheck", "--types", "node", "src/license.ts"],
                          cwd=KIT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "license.js"


def b64(payload: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def cases(key: SigningKey, stranger: SigningKey) -> dict[str, tuple[str, str]]:
    """name → (license text, course asked for)."""
    def issue(signer: SigningKey = key, **overrides: Any) -> str:
        fields: dict[str, Any] = {"license_id": str(uuid.uuid4()), "course_id": "cpp-primer-5th",
                                  "order_id": "ord_x", "plan": "one_time", "created_at": NOW - timedelta(days=1),
                                  "expires_at": NOW + timedelta(days=30)}
        fields.update(overrides)
        return issue_license(signer, **fields)

    def signed_license(body: dict[str, Any]) -> str:
        """A license as one was signed before ``typ``: the signature over the ASCII of DATA itself."""
        data = b64(body).encode("ascii")
        return data.decode() + "|" + base64.b64encode(
            key.private_key.sign(signed_message("license", data), padding.PKCS1v15(), hashes.SHA256())).decode()

    good = issue()
    data, signature = good.split("|")
    payload = json.loads(base64.b64decode(data))
    legacy = signed_license({"id": str(uuid.uuid4()), "contentPermissions": ["all_chapters"],
                             "expiresAt": "2027-01-06T12:00:00.000Z"})
    no_expiry = signed_license({k: v for k, v in payload.items() if k != "expiresAt"})
    return {
        "valid": (good, "cpp-primer-5th"),
        "valid, any course": (good, ""),
        "pasted with spaces and a newline": (f"  {good}\n", "cpp-primer-5th"),
        "expired": (issue(created_at=NOW - timedelta(days=60), expires_at=NOW - timedelta(days=30)), "cpp-primer-5th"),
        "another course": (issue(course_id="rust-monthly"), "cpp-primer-5th"),
        "forged expiry": (b64({**payload, "expiresAt": "2999-01-01T00:00:00.000Z"}) + "|" + signature, "cpp-primer-5th"),
        "a stranger's key": (issue(stranger), "cpp-primer-5th"),
        "signed, but no expiry": (no_expiry, "cpp-primer-5th"),
        "a revocation list": (sign_document(key, {"typ": "revocations", "kid": key.kid, "v": 1,
                                                  "issuedAt": "2026-12-06T11:00:00.000Z", "revoked": []}), ""),
        "no DATA|SIG": ("not-a-license", "cpp-primer-5th"),
        "legacy, before typ": (legacy, ""),
    }


def server_word(text: str, course: str, key: SigningKey) -> str:
    check = verify_license(text, [key.public_key], NOW, expected_course=course or None)
    if check.status == "invalid" and check.reason == "wrong course":
        return "wrong_course"
    return check.status


def test_the_three_verifiers_agree_on_every_kind_of_license(kit_license_js: Path) -> None:
    key = SigningKey.from_pem(generate_private_key_pem())
    stranger = SigningKey.from_pem(generate_private_key_pem())
    named = cases(key, stranger)
    request = {"pem": key.public_pem(), "kid": key.kid,
               "cases": [{"key": text, "courseId": course or None, "now": NOW.isoformat()}
                         for text, course in named.values()]}
    # JSON null is not "no course" to either client; leave courseId out instead.
    for case in request["cases"]:
        if case["courseId"] is None:
            del case["courseId"]
    env = {**os.environ, "EXTENSION_JS": str(ROOT / "clients" / "extension" / "index.js"),
           "KIT_LICENSE_JS": str(kit_license_js)}
    done = subprocess.run([node(), str(ROOT / "tests" / "node" / "compare_verifiers.js")], input=json.dumps(request),
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    verdicts = json.loads(done.stdout)

    seen = {name: (server_word(text, course, key), v["extension"], v["kit"])
            for (name, (text, course)), v in zip(named.items(), verdicts)}
    disagreeing = {name: words for name, words in seen.items() if len(set(words)) != 1}
    assert disagreeing == {}, f"(server, extension, kit) verdicts differ: {disagreeing}"
    assert {name: words[0] for name, words in seen.items()} == {
        "valid": "valid", "valid, any course": "valid", "pasted with spaces and a newline": "valid",
        "expired": "expired", "another course": "wrong_course", "forged expiry": "invalid",
        "a stranger's key": "invalid", "a revocation list": "invalid", "no DATA|SIG": "invalid",
        "legacy, before typ": "valid", "signed, but no expiry": "invalid"}
