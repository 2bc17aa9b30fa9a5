"""Every signed document the server publishes, fed to every verifier we ship: each accepts only its own type."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Shop
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from learner_helpers import buy
from test_license_node_interop import node

from licensing import (
    REVOCATIONS_MAX_AGE,
    SigningKey,
    generate_private_key_pem,
    issue_license,
    js_iso,
    sign_revocations,
    signed_message,
    verify_license,
    verify_revocations,
)

ROOT = Path(__file__).resolve().parent.parent
EXTENSION_CHECK = ROOT / "tests" / "node" / "verify_license.mjs"
UTC = dt.timezone.utc

# Runs our clients/extension verifiers on every document given on stdin, one verdict per document.
OUR_NODE_CHECKS = """
const { verifyLicense, verifyRevocations } = require(process.argv[1]);
const { documents, pem } = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const verdicts = {};
for (const [name, text] of Object.entries(documents)) {
  const license = verifyLicense(text, pem);
  const list = verifyRevocations(text, pem);
  verdicts[name] = { license: license.valid && !license.expired, licenseReason: license.reason,
                     revocations: list.valid, revocationsReason: list.reason };
}
process.stdout.write(JSON.stringify(verdicts));
"""


@dataclass
class Verdicts:
    """Which verifier accepted which document: verifier name → set of accepted document names."""

    accepted: dict[str, set[str]]


def sign_as(key: SigningKey, typ: str, payload: dict[str, Any]) -> str:
    """Sign any payload over the message of ``typ``, whatever the payload itself says."""
    data = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode())
    signature = key.private_key.sign(signed_message(typ, data), padding.PKCS1v15(), hashes.SHA256())
    return data.decode() + "|" + base64.b64encode(signature).decode()


def old_style_revocation_list(key: SigningKey, now: dt.datetime) -> str:
    """The revocation list as the server published it before documents had a typ: signed over bare DATA."""
    return sign_as(key, "license", {"v": 1, "kid": key.kid, "issuedAt": js_iso(now), "revoked": []})


def lbpay_license_verify(tmp_path: Path, text: str, pem_file: Path) -> int:
    """Run `lbpay license verify` on a document; return its exit status."""
    document = tmp_path / "document.txt"
    document.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update(LBPAY_INSTANCE_PATH=str(tmp_path / "cli-instance"), LBPAY_SCHEDULER="off",
               LBPAY_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}")
    result = subprocess.run([sys.executable, "-c", "from cli import main; main()", "license", "verify",
                             str(document), "--public-key-file", str(pem_file)],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode


def extension_exact_check(tmp_path: Path, text: str, pem_file: Path) -> int:
    """Run the Node copy of the extension's own check; return its exit status (0: valid and not expired)."""
    document = tmp_path / "extension-document.txt"
    document.write_text(text)
    result = subprocess.run([node(), str(EXTENSION_CHECK), str(document), str(pem_file)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode


def run_every_verifier(tmp_path: Path, documents: dict[str, str], shop: Shop) -> Verdicts:
    """Feed each document to every verifier we ship and to the extension's own check."""
    public = shop.keys.license.public_key()
    keys = shop.app.extensions["lbpay.shop"].license_keys.public_keys()
    [pem] = [k["public_key_pem"] for k in shop.get("/api/v1/license-keys").json()["keys"] if k["active"]]
    pem_file = tmp_path / "public-key.txt"
    pem_file.write_text(pem)
    now = shop.clock()
    accepted: dict[str, set[str]] = {name: set() for name in (
        "python verify_license", "python verify_revocations", "lbpay license verify",
        "clients/extension verifyLicense", "clients/extension verifyRevocations", "the extension's own check")}
    ours = subprocess.run([node(), "-e", OUR_NODE_CHECKS, str(ROOT / "clients" / "extension" / "index.js")],
                          input=json.dumps({"documents": documents, "pem": pem}),
                          capture_output=True, text=True, timeout=30)
    assert ours.returncode == 0, ours.stderr
    node_verdicts = json.loads(ours.stdout)
    for name, text in documents.items():
        if verify_license(text, [public], now).ok:
            accepted["python verify_license"].add(name)
        if verify_revocations(text, keys, now).ok:
            accepted["python verify_revocations"].add(name)
        if lbpay_license_verify(tmp_path, text, pem_file) == 0:
            accepted["lbpay license verify"].add(name)
        if node_verdicts[name]["license"]:
            accepted["clients/extension verifyLicense"].add(name)
        if node_verdicts[name]["revocations"]:
            accepted["clients/extension verifyRevocations"].add(name)
        if extension_exact_check(tmp_path, text, pem_file) == 0:
            accepted["the extension's own check"].add(name)
    return Verdicts(accepted)


def test_each_published_document_verifies_only_as_its_own_type(shop: Shop, tmp_path: Path) -> None:
    bought = buy(shop)
    documents = {"license": bought["license"]["key"], "revocations": shop.get("/api/v1/revocations").text}

    verdicts = run_every_verifier(tmp_path, documents, shop)

    assert verdicts.accepted == {
        "python verify_license": {"license"},
        "python verify_revocations": {"revocations"},
        "lbpay license verify": {"license"},
        "clients/extension verifyLicense": {"license"},
        "clients/extension verifyRevocations": {"revocations"},
        "the extension's own check": {"license"},
    }


def test_an_old_style_revocation_list_fools_none_of_our_verifiers(shop: Shop, tmp_path: Path) -> None:
    signer = shop.app.extensions["lbpay.shop"].license_keys.active
    documents = {"old list": old_style_revocation_list(signer, shop.clock())}

    verdicts = run_every_verifier(tmp_path, documents, shop)

    # The extension's own check (which we cannot change) reads the missing expiresAt as "forever":
    # lists published before this release stay a hole there until the key is rotated (README).
    assert verdicts.accepted["the extension's own check"] == {"old list"}
    assert {name: found for name, found in verdicts.accepted.items() if found} == {
        "the extension's own check": {"old list"}}


def test_the_revocation_list_names_its_type_and_date(shop: Shop) -> None:
    text = shop.get("/api/v1/revocations").text
    check = verify_revocations(text, shop.app.extensions["lbpay.shop"].license_keys.public_keys(), shop.clock())

    assert check.ok, check.reason
    payload = json.loads(base64.b64decode(text.split("|")[0]))
    assert (payload["typ"], payload["v"], payload["revoked"]) == ("revocations", 1, [])
    assert check.issued_at is not None and abs((check.issued_at - shop.clock()).total_seconds()) < 5


# --- the revocation list's freshness, offline --------------------------------------------------

@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.from_pem(generate_private_key_pem())


ISSUED = dt.datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def test_a_revocation_list_is_trusted_for_seven_days_then_refused(key: SigningKey) -> None:
    text = sign_revocations(key, ["a", "b"], ISSUED)

    fresh = verify_revocations(text, [key.public_key], ISSUED + REVOCATIONS_MAX_AGE)
    stale = verify_revocations(text, [key.public_key], ISSUED + REVOCATIONS_MAX_AGE + dt.timedelta(milliseconds=1))

    assert (fresh.ok, fresh.revoked, fresh.issued_at, fresh.kid) == (True, frozenset({"a", "b"}), ISSUED, key.kid)
    assert (stale.ok, stale.reason, stale.revoked) == (False, "stale", frozenset())


def test_the_freshness_limit_is_a_parameter(key: SigningKey) -> None:
    text = sign_revocations(key, [], ISSUED)
    a_day = dt.timedelta(days=1)

    assert verify_revocations(text, [key.public_key], ISSUED + a_day, max_age=a_day).ok
    assert verify_revocations(text, [key.public_key], ISSUED + 2 * a_day, max_age=a_day).reason == "stale"
    assert verify_revocations(text, [key.public_key], ISSUED + 30 * a_day, max_age=60 * a_day).ok


def test_a_revocation_list_from_the_future_is_refused(key: SigningKey) -> None:
    text = sign_revocations(key, [], ISSUED)

    assert verify_revocations(text, [key.public_key], ISSUED - dt.timedelta(minutes=4)).ok  # clock skew
    assert verify_revocations(text, [key.public_key], ISSUED - dt.timedelta(hours=1)).reason == "issued in the future"


def test_a_license_is_not_a_revocation_list_nor_the_reverse(key: SigningKey) -> None:
    license_text = issue_license(key, license_id="5b0c9a8e-2f47-4d1a-9c3e-7a1b2c3d4e5f", course_id="c",
                                 order_id="o", plan="one_time", created_at=ISSUED,
                                 expires_at=ISSUED + dt.timedelta(days=30))
    list_text = sign_revocations(key, [], ISSUED)
    now = ISSUED + dt.timedelta(hours=1)

    assert verify_revocations(license_text, [key.public_key], now).reason == "bad signature"
    assert verify_license(list_text, [key.public_key], now).reason == "bad signature"
    assert verify_license(old_style_revocation_list(key, now), [key.public_key], now).reason == "not a license"


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("revoked", [1], "bad revoked list"),
    ("revoked", "a", "bad revoked list"),
    ("issuedAt", "yesterday", "bad issuedAt"),
    ("issuedAt", None, "bad issuedAt"),
    ("typ", "license", "not a revocations"),
    ("typ", None, "not a revocations"),
    ("v", 2, "unsupported version"),
])
def test_a_malformed_revocation_list_is_refused(key: SigningKey, field: str, value: Any, reason: str) -> None:
    payload: dict[str, Any] = {"typ": "revocations", "v": 1, "kid": key.kid, "issuedAt": js_iso(ISSUED),
                               "revoked": []}
    if value is None:
        del payload[field]
    else:
        payload[field] = value

    check = verify_revocations(sign_as(key, "revocations", payload), [key.public_key], ISSUED)

    assert (check.ok, check.reason) == (False, reason)


# --- `lbpay keys export`: what the extension ships ---------------------------------------------

def lbpay_in_live_mode(shop: Shop, tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run an `lbpay` command with the shop's own live-mode settings, as the creator would on the server."""
    from conftest import live_config

    env = {k: v for k, v in os.environ.items() if not k.startswith("LBPAY_")}
    env.update({"LBPAY_" + name: str(value)
                for name, value in live_config(tmp_path, shop.keys, shop.sandbox.url, **settings).items()})
    return subprocess.run([sys.executable, "-c", "from cli import main; main()", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_keys_export_writes_the_key_the_extension_loads_and_the_whole_ring(shop: Shop, tmp_path: Path) -> None:
    bought = buy(shop)
    out = tmp_path / "extension"

    result = lbpay_in_live_mode(shop, tmp_path, "keys", "export", str(out))

    assert result.returncode == 0, result.stderr
    folder = out / "licence-keys"
    assert sorted(p.name for p in folder.iterdir()) == ["keyring.json", "public-key.txt"]
    assert "PRIVATE" not in (folder / "public-key.txt").read_text() + (folder / "keyring.json").read_text()
    published = shop.get("/api/v1/license-keys").json()["keys"]
    ring = json.loads((folder / "keyring.json").read_text())
    assert ring == {"keys": [{"kid": k["kid"], "pem": k["public_key_pem"], "active": k["active"]}
                             for k in published]}
    [active] = [k for k in published if k["active"]]
    assert (folder / "public-key.txt").read_text() == active["public_key_pem"]
    # The license bought over HTTP passes the extension's own check with the exported file, as shipped.
    assert extension_exact_check(tmp_path, bought["license"]["key"], folder / "public-key.txt") == 0


def test_keys_export_lists_retired_keys_as_not_active(shop: Shop, tmp_path: Path) -> None:
    before = shop.app.extensions["lbpay.shop"].license_keys.active.kid
    rotated = lbpay_in_live_mode(shop, tmp_path, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr

    result = lbpay_in_live_mode(shop, tmp_path, "keys", "export", str(tmp_path / "out"))

    assert result.returncode == 0, result.stderr
    ring = json.loads((tmp_path / "out" / "licence-keys" / "keyring.json").read_text())["keys"]
    assert [(k["kid"] == before, k["active"]) for k in ring] == [(False, True), (True, False)]
    public = (tmp_path / "out" / "licence-keys" / "public-key.txt").read_text()
    assert public == ring[0]["pem"] and public != ring[1]["pem"]
