"""Issue 24: a subscription key signed again shorter (a refunded period) is revoked offline too.

The shorter key keeps its license id, so listing the id would revoke the period still paid for.
The revocation list names the replaced, longer key by itself (``revokedKeys``: SHA-256 of its
DATA part), until that key's own end, and every verifier — the server's, the extension client's
and the kit's — refuses that key while the shorter one stays valid.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from conftest import Shop
from learner_helpers import buy
from test_license_node_interop import node
from test_notify_path import settle_refund_of
from test_one_verifier import kit_license_js  # noqa: F401  (a fixture: license.ts compiled)

from licensing import SigningKey, generate_private_key_pem, key_digest, sign_document, verify_revocations
from wechatpay.crypto import load_public_key

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)


def other_verifiers(kit_js: Path, pem: str, kid: str, listed: str, now: dt.datetime,
                    keys: list[tuple[str, str]]) -> dict[str, Any]:
    """What the extension client and the kit make of one list and some keys."""
    request = {"pem": pem, "kid": kid, "list": listed, "now": now.isoformat(),
               "keys": [{"key": key, "id": license_id} for key, license_id in keys]}
    env = {**os.environ, "EXTENSION_JS": str(ROOT / "clients" / "extension" / "index.js"), "KIT_LICENSE_JS": str(kit_js)}
    done = subprocess.run([node(), str(ROOT / "tests" / "node" / "compare_revocations.js")],
                          input=json.dumps(request), capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def signing_keys(shop: Shop) -> tuple[str, str, dict[str, Any]]:
    [key] = [k for k in shop.get("/api/v1/license-keys").json()["keys"] if k["active"]]
    return key["public_key_pem"], key["kid"], {key["kid"]: load_public_key(key["public_key_pem"].encode())}


def current_key(shop: Shop, buyer_token: str) -> str:
    [lic] = shop.get("/api/v1/me/licenses", token=buyer_token).json()["licenses"]
    return str(lic["key"])


def test_the_longer_key_a_refunded_renewal_replaced_is_revoked_by_every_verifier(
        shop: Shop, kit_license_js: Path) -> None:  # noqa: F811
    first = buy(shop, "rust-monthly")
    renewal = buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    license_id, longer = first["license"]["id"], renewal["license"]["key"]
    settle_refund_of(shop, renewal["order_id"])
    shorter = current_key(shop, first["buyer_token"])
    assert shorter != longer

    listed = shop.get("/api/v1/revocations").text.strip()
    pem, kid, public = signing_keys(shop)
    check = verify_revocations(listed, public, shop.clock())

    assert check.ok and license_id not in check.revoked, "the period still paid for stays"
    assert check.revoked_keys == {key_digest(longer)}
    assert check.covers(longer, license_id) and not check.covers(shorter, license_id)
    seen = other_verifiers(kit_license_js, pem, kid, listed, shop.clock(), [(longer, license_id), (shorter, license_id)])
    assert seen["extension"] == {"ok": True, "reason": "ok", "revoked": [True, False]}, seen
    assert seen["kit"] == {"ok": True, "reason": "ok", "revoked": [True, False]}, seen

    # Past the longer key's own end it is dead anyway, and the list stops naming it.
    shop.clock.advance(61 * 86400)
    later = verify_revocations(shop.get("/api/v1/revocations").text.strip(), public, shop.clock())
    assert later.ok and later.revoked_keys == frozenset()


def _list(key: SigningKey, **fields: Any) -> str:
    return sign_document(key, {"typ": "revocations", "v": 1, "kid": key.kid, "issuedAt": "2026-12-06T11:00:00.000Z",
                               "revoked": [], **fields})


def test_a_list_without_single_keys_is_read_and_a_malformed_one_refused_alike_everywhere(
        kit_license_js: Path) -> None:  # noqa: F811
    key = SigningKey.from_pem(generate_private_key_pem())
    older = _list(key)  # from a server before keys were listed
    bad = [_list(key, revokedKeys="0" * 32), _list(key, revokedKeys=["not-a-digest"]),
           _list(key, revokedKeys=[key_digest("x|y").upper()])]
    for text, ok in [(older, True)] + [(b, False) for b in bad]:
        assert verify_revocations(text, [key.public_key], NOW).ok is ok
        seen = other_verifiers(kit_license_js, key.public_pem(), key.kid, text, NOW, [])
        assert (seen["extension"]["ok"], seen["kit"]["ok"]) == (ok, ok), (text, seen)


def test_the_key_digest_is_over_the_signed_part_and_ignores_surrounding_space() -> None:
    assert key_digest("  abc|sig\n") == key_digest("abc|other") != key_digest("abd|sig")
    assert len(key_digest("abc|sig")) == 32
