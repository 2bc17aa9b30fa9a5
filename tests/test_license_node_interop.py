"""The licenses we issue pass the extension's own check, run in Node exactly as the extension runs it."""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from licensing import (
    SigningKey,
    generate_private_key_pem,
    issue_license,
    js_iso,
    load_public_key_pem,
    verify_license,
)

HERE = Path(__file__).parent
VERIFY_SCRIPT = HERE / "node" / "verify_license.mjs"
VECTORS = HERE / "vectors" / "learning-buddy-license"


def node() -> str:
    """Return the node executable; its absence fails the test, since interop is then unproven."""
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not on PATH; install Node 20 to check licenses against the extension's verifier")
    return path


@cache
def signing_key() -> SigningKey:
    return SigningKey.from_pem(generate_private_key_pem())


def issue(**overrides: Any) -> str:
    now = datetime.now(timezone.utc)
    fields: dict[str, Any] = {
        "license_id": str(uuid.uuid4()),
        "course_id": "cpp-primer",
        "order_id": "LB20261126140501ab12",
        "plan": "subscription",
        "created_at": now,
        "expires_at": now + timedelta(days=30),
    }
    fields.update(overrides)
    return issue_license(signing_key(), **fields)


def run_extension_check(tmp_path: Path, license_text: str, public_key_pem: str) -> tuple[int, dict[str, Any]]:
    """Run the Node verifier on a license and public key; return its exit code and parsed report."""
    license_file = tmp_path / "license.txt"
    key_file = tmp_path / "public-key.pem"
    license_file.write_text(license_text)
    key_file.write_text(public_key_pem)
    result = subprocess.run(
        [node(), str(VERIFY_SCRIPT), str(license_file), str(key_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_the_extension_accepts_a_license_we_issue(tmp_path: Path) -> None:
    text = issue()

    code, report = run_extension_check(tmp_path, text, signing_key().public_pem())

    assert (code, report["valid"], report["expired"]) == (0, True, False)
    assert report["payload"] == verify_license(text, [signing_key().public_key], datetime.now(timezone.utc)).payload


def test_the_extension_reads_non_ascii_fields_as_we_wrote_them(tmp_path: Path) -> None:
    code, report = run_extension_check(tmp_path, issue(course_id="C++ 入门 🚀"), signing_key().public_pem())

    assert code == 0
    assert report["payload"]["courseId"] == "C++ 入门 🚀"


def test_the_extension_sees_our_expired_license_as_expired(tmp_path: Path) -> None:
    past = datetime.now(timezone.utc) - timedelta(days=60)
    text = issue(created_at=past, expires_at=past + timedelta(days=30))

    code, report = run_extension_check(tmp_path, text, signing_key().public_pem())

    assert (code, report["valid"], report["expired"]) == (1, True, True)
    assert verify_license(text, [signing_key().public_key], datetime.now(timezone.utc)).status == "expired"


def test_the_extension_rejects_a_license_whose_data_was_changed(tmp_path: Path) -> None:
    data, signature = issue().split("|")
    payload = json.loads(base64.b64decode(data))
    payload["expiresAt"] = "2099-01-01T00:00:00.000Z"
    forged = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode() + "|" + signature

    code, report = run_extension_check(tmp_path, forged, signing_key().public_pem())

    assert (code, report["valid"]) == (1, False)
    assert verify_license(forged, [signing_key().public_key], datetime.now(timezone.utc)).reason == "bad signature"


def test_the_extension_rejects_our_license_under_another_key(tmp_path: Path) -> None:
    stranger = SigningKey.from_pem(generate_private_key_pem())

    code, report = run_extension_check(tmp_path, issue(), stranger.public_pem())

    assert (code, report["valid"]) == (1, False)


@pytest.mark.parametrize("name", ["test-license-valid.txt", "test-license-expired.txt", "test-license-invalid.txt"])
def test_node_and_python_agree_on_the_extensions_samples(tmp_path: Path, name: str) -> None:
    text = (VECTORS / name).read_text()
    public_pem = (VECTORS / "public-key.txt").read_text()
    code, report = run_extension_check(tmp_path, text, public_pem)
    ours = verify_license(text, [load_public_key_pem(public_pem.encode())], datetime.now(timezone.utc))

    assert report["valid"] is True
    assert report["payload"] == ours.payload
    assert report["expired"] == (ours.status == "expired")
    assert code == (0 if ours.ok else 1)


def test_js_iso_matches_node_toisostring(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    span_ms = int(datetime(9999, 12, 31, tzinfo=timezone.utc).timestamp() * 1000)
    millis = [0, 1, 999, 1_000, span_ms] + [rng.randrange(0, span_ms) for _ in range(500)]
    script = (
        "const ms = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(ms.map((m) => new Date(m).toISOString())));"
    )

    result = subprocess.run([node(), "-e", script], input=json.dumps(millis), capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    # Sub-millisecond parts are what JS cannot hold; js_iso must drop them, as Date would.
    ours = [js_iso(epoch + timedelta(milliseconds=m, microseconds=rng.randrange(1000))) for m in millis]
    assert ours == json.loads(result.stdout)


@pytest.mark.parametrize("spoil", [" {}", "{}\n", "\t{}", "{}|extra"])
def test_the_extension_rejects_a_key_it_was_handed_with_anything_around_it(tmp_path: Path, spoil: str) -> None:
    # The extension splits the pasted text as it is: a leading space is part of DATA and breaks the
    # signature; a third part breaks the split. A trailing newline only follows the base64 signature,
    # which Node's decoder skips, so the extension accepts that one.
    text = spoil.format(issue())

    code, report = run_extension_check(tmp_path, text, signing_key().public_pem())

    accepted = spoil == "{}\n"
    assert (code, report["valid"]) == ((0, True) if accepted else (1, False)), report


def test_the_extension_reads_a_license_without_expires_at_as_never_expiring(tmp_path: Path) -> None:
    # Its check compares `new Date(undefined) < now`, which is false: the flaw the VS Code kit refuses.
    data = base64.b64encode(json.dumps({"id": "x", "contentPermissions": ["all"]}).encode()).decode()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = signing_key().private_key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
    code, report = run_extension_check(tmp_path, data + "|" + base64.b64encode(signature).decode(),
                                       signing_key().public_pem())

    assert (code, report["valid"], report["expired"]) == (0, True, False)
