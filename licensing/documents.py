"""Issue and verify typed signed documents in the extension's `DATA|SIG` format (base64 JSON, RSA PKCS#1 v1.5 SHA-256).

A license's signature covers the ASCII of DATA, as the extension checks it. Every other document
(the revocation list, ...) names its own ``typ`` and is signed over ``"lbpay." + typ + "\n" + DATA``,
so no license verifier, ours or the extension's, can ever accept it as a license.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .keys import SigningKey, key_id

FORMAT_VERSION = 1
PLANS = ("one_time", "subscription")

LICENSE = "license"
REVOCATIONS = "revocations"
# What a document other than a license signs before its DATA; the newline ends the type name.
DOCUMENT_PREFIX = "lbpay."
_TYP = re.compile(r"[a-z][a-z0-9-]{0,31}")
# A legacy license (signed before documents had a typ) must at least look like one.
LEGACY_LICENSE_FIELDS = ("id", "contentPermissions", "expiresAt")
REVOCATIONS_MAX_AGE = timedelta(days=7)
# A list from a server whose clock runs a little ahead is fine; one from next week is not.
CLOCK_SKEW = timedelta(minutes=5)

# Our licenses are well under 1 KiB; a cap keeps hostile input from costing more than a glance.
MAX_LICENSE_CHARS = 16 * 1024

# JS `Date.prototype.toISOString()` shape, plus the offsets and precisions ISO 8601 allows;
# [0-9] rather than \d because \d also matches non-ASCII digits.
_ISO_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})")

VALID = "valid"
EXPIRED = "expired"
INVALID = "invalid"


def js_iso(dt: datetime) -> str:
    """Format an aware datetime exactly as JS `toISOString()` does: UTC, milliseconds, `Z`."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("js_iso needs an aware datetime")
    utc = dt.astimezone(timezone.utc)
    # JS dates hold whole milliseconds, so drop (not round) the microseconds below them.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def parse_js_iso(text: str) -> datetime | None:
    """Parse an ISO-8601 timestamp with a zone (as `toISOString()` writes it); None if it is not one."""
    if not _ISO_UTC.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except (ValueError, OverflowError):  # impossible dates; offsets pushing past year 1 or 9999
        return None


def signed_message(typ: str, data: bytes) -> bytes:
    """The bytes a document of type ``typ`` is signed over: DATA for a license, else the typed prefix and DATA."""
    if not _TYP.fullmatch(typ):
        raise ValueError(f"typ {typ!r} is not a lower-case name")
    if typ == LICENSE:
        return data
    return (DOCUMENT_PREFIX + typ + "\n").encode("ascii") + data


def sign_document(key: SigningKey, payload: dict[str, Any]) -> str:
    """Sign a JSON object naming its ``typ`` into `DATA|SIG`: compact UTF-8 JSON in base64, then the signature."""
    typ = payload.get("typ")
    if not isinstance(typ, str) or not _TYP.fullmatch(typ):
        raise ValueError("a signed document must name its typ (a lower-case name)")
    if "kid" in payload and payload["kid"] != key.kid:
        raise ValueError(f"payload kid {payload['kid']!r} is not the signing key's kid {key.kid!r}")
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    data = base64.b64encode(body)
    signature = key.private_key.sign(signed_message(typ, data), padding.PKCS1v15(), hashes.SHA256())
    return data.decode("ascii") + "|" + base64.b64encode(signature).decode("ascii")


def issue_license(
    key: SigningKey,
    *,
    license_id: str,
    course_id: str,
    order_id: str,
    plan: str,
    created_at: datetime,
    expires_at: datetime,
    permissions: Sequence[str] = ("all_chapters",),
    max_downloads: int | None = None,
) -> str:
    """Sign a course license the extension will accept until ``expires_at``."""
    try:
        parsed_id = uuid.UUID(license_id)
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"license_id {license_id!r} is not a UUID") from None
    if str(parsed_id) != license_id or parsed_id.version != 4:
        raise ValueError(f"license_id {license_id!r} is not a lower-case hyphenated UUID4")
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, not {plan!r}")
    for name, value in (("course_id", course_id), ("order_id", order_id)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    # A bare string is a Sequence[str] too; "all_chapters" would become a list of letters.
    if isinstance(permissions, str) or not all(isinstance(p, str) for p in permissions):
        raise TypeError("permissions must be a sequence of strings")
    created, expires = js_iso(created_at), js_iso(expires_at)
    if expires_at <= created_at:
        raise ValueError("expires_at must be after created_at")
    payload: dict[str, Any] = {
        "typ": LICENSE,
        "id": license_id,
        "createdAt": created,
        "expiresAt": expires,
        "contentPermissions": list(permissions),
        "v": FORMAT_VERSION,
        "kid": key.kid,
        "courseId": course_id,
        "orderId": order_id,
        "plan": plan,
    }
    if max_downloads is not None:
        if type(max_downloads) is not int or max_downloads < 1:
            raise ValueError("max_downloads must be a positive whole number")
        payload["limits"] = {"maxDownloads": max_downloads}
    return sign_document(key, payload)


@dataclass(frozen=True)
class LicenseCheck:
    """What verifying a license found: status, a short stable reason, and the signed payload if it verified."""

    status: str  # "valid" | "expired" | "invalid"
    reason: str
    payload: dict[str, Any] | None
    kid: str | None

    @property
    def ok(self) -> bool:
        """True when the license is genuine, for the expected course, and not expired."""
        return self.status == VALID


def _canonical_b64decode(text: str) -> bytes | None:
    """Decode padded standard base64, or None unless ``text`` is exactly what encoding the bytes gives back."""
    if not text or not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    # Re-encoding rejects what b64decode tolerates: stray padding, non-zero trailing bits.
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """Parse strict UTF-8 JSON (no NaN, no duplicate keys); None unless it is an object."""
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_object
        )
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _signer(message: bytes, signature: bytes, keys: Sequence[tuple[str, RSAPublicKey]]) -> str | None:
    """Return the kid of the key whose signature this is, or None."""
    for kid, public_key in keys:
        try:
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            continue
        return kid
    return None


def _key_list(public_keys: Mapping[str, RSAPublicKey] | Sequence[RSAPublicKey]) -> list[tuple[str, RSAPublicKey]]:
    if isinstance(public_keys, Mapping):
        keys = list(public_keys.items())
    else:
        keys = [(key_id(public_key), public_key) for public_key in public_keys]
    if not keys:
        raise ValueError("no public keys to verify with")
    return keys


def _open(text: object, typ: str, keys: Sequence[tuple[str, RSAPublicKey]]) -> LicenseCheck:
    """Check a `DATA|SIG` document's shape, signature (over the message of ``typ``), JSON, version and kid.

    Returns status ``valid`` with the payload and signer, or ``invalid`` with the reason.
    """
    known = {kid for kid, _ in keys}

    def invalid(reason: str, payload: dict[str, Any] | None = None, kid: str | None = None) -> LicenseCheck:
        return LicenseCheck(INVALID, reason, payload, kid)

    if not isinstance(text, str):
        return invalid("not text")
    if len(text) > MAX_LICENSE_CHARS:
        return invalid("too long")
    parts = text.strip().split("|")
    if len(parts) != 2:
        return invalid("not DATA|SIG")
    data_text, signature_text = parts
    body = _canonical_b64decode(data_text)
    signature = _canonical_b64decode(signature_text)
    if body is None or signature is None:
        return invalid("bad base64")

    # Verify before parsing: the signature covers the ASCII of DATA exactly as it arrived.
    signer = _signer(signed_message(typ, data_text.encode("ascii")), signature, keys)
    if signer is None:
        # Only the reason depends on the unverified content: a kid we do not hold means a key we
        # retired or never had, which is worth telling apart from a forgery when supporting a buyer.
        claimed = _json_object(body)
        if claimed is not None and isinstance(claimed.get("kid"), str) and claimed["kid"] not in known:
            return invalid("unknown key")
        return invalid("bad signature")

    payload = _json_object(body)
    if payload is None:
        return invalid("not a JSON object", kid=signer)
    if "v" in payload and not (type(payload["v"]) is int and payload["v"] == FORMAT_VERSION):
        return invalid("unsupported version", payload, signer)
    if "kid" in payload:
        if not isinstance(payload["kid"], str) or payload["kid"] not in known:
            return invalid("unknown key", payload, signer)
        if payload["kid"] != signer:
            return invalid("key mismatch", payload, signer)
    if "typ" in payload:
        if payload["typ"] != typ:
            return invalid(f"not a {typ}", payload, signer)
    elif typ != LICENSE or not all(name in payload for name in LEGACY_LICENSE_FIELDS):
        # Only licenses predate typ, and they always carried these fields.
        return invalid(f"not a {typ}", payload, signer)
    return LicenseCheck(VALID, "ok", payload, signer)


def verify_license(
    text: str,
    public_keys: Mapping[str, RSAPublicKey] | Sequence[RSAPublicKey],
    now: datetime,
    *,
    expected_course: str | None = None,
) -> LicenseCheck:
    """Check a `DATA|SIG` license: signature first, then version, key, type, course and expiry; never raises on text."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    opened = _open(text, LICENSE, _key_list(public_keys))
    if not opened.ok:
        return opened
    payload, signer = opened.payload or {}, opened.kid

    def invalid(reason: str) -> LicenseCheck:
        return LicenseCheck(INVALID, reason, payload, signer)

    if expected_course is not None and payload.get("courseId") != expected_course:
        return invalid("wrong course")
    # The extension reads a missing expiresAt as "forever"; we never issue one, so none is accepted.
    if "expiresAt" not in payload:
        return invalid("no expiry")
    expires_text = payload["expiresAt"]
    expires = parse_js_iso(expires_text) if isinstance(expires_text, str) else None
    if expires is None:
        return invalid("bad expiresAt")
    if now >= expires:
        return LicenseCheck(EXPIRED, "expired", payload, signer)
    return LicenseCheck(VALID, "ok", payload, signer)


# How a revocation list names one key of a license (not the whole license id): the first 32 hex
# digits of SHA-256 over the key's DATA part, the part its signature covers (so no other spelling
# of the same key verifies). A subscription's key signed again shorter keeps its license id; the
# longer key it replaces is listed this way until its own end.
KEY_DIGEST_HEX = 32
_KEY_DIGEST = re.compile(r"[0-9a-f]{32}")


def key_digest(text: str) -> str:
    """The name of one license key in a revocation list's ``revokedKeys``."""
    data = text.strip().split("|", 1)[0]
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:KEY_DIGEST_HEX]


@dataclass(frozen=True)
class RevocationsCheck:
    """What verifying a revocation list found: whether to trust it, why not, the revoked license ids and keys."""

    ok: bool
    reason: str
    revoked: frozenset[str]
    issued_at: datetime | None
    kid: str | None
    revoked_keys: frozenset[str] = frozenset()

    def covers(self, text: str, license_id: str | None) -> bool:
        """Whether this list revokes the license key ``text`` (its whole license id, or this key alone)."""
        return (license_id is not None and license_id in self.revoked) or key_digest(text) in self.revoked_keys


def sign_revocations(key: SigningKey, revoked: Sequence[str], issued_at: datetime,
                     revoked_keys: Sequence[str] = ()) -> str:
    """Sign the revoked license ids and the revoked single keys (``key_digest``) as a ``revocations`` document."""
    if isinstance(revoked, str) or not all(isinstance(item, str) for item in revoked):
        raise TypeError("revoked must be a sequence of license ids")
    if isinstance(revoked_keys, str) or not all(isinstance(d, str) and _KEY_DIGEST.fullmatch(d) for d in revoked_keys):
        raise TypeError("revoked_keys must be a sequence of key digests")
    return sign_document(key, {"typ": REVOCATIONS, "v": FORMAT_VERSION, "kid": key.kid,
                               "issuedAt": js_iso(issued_at), "revoked": sorted(revoked),
                               "revokedKeys": sorted(set(revoked_keys))})


def verify_revocations(
    text: str,
    public_keys: Mapping[str, RSAPublicKey] | Sequence[RSAPublicKey],
    now: datetime,
    *,
    max_age: timedelta = REVOCATIONS_MAX_AGE,
) -> RevocationsCheck:
    """Check a signed revocation list: its type and signature, and that it is no older than ``max_age``."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    opened = _open(text, REVOCATIONS, _key_list(public_keys))

    def refuse(reason: str, issued_at: datetime | None = None) -> RevocationsCheck:
        return RevocationsCheck(False, reason, frozenset(), issued_at, opened.kid)

    if not opened.ok or opened.payload is None:
        return refuse(opened.reason)
    payload = opened.payload
    revoked = payload.get("revoked")
    if not isinstance(revoked, list) or not all(isinstance(item, str) for item in revoked):
        return refuse("bad revoked list")
    revoked_keys = payload.get("revokedKeys", [])  # absent from lists signed before keys were listed
    if not isinstance(revoked_keys, list) or not all(isinstance(d, str) and _KEY_DIGEST.fullmatch(d)
                                                     for d in revoked_keys):
        return refuse("bad revokedKeys list")
    issued_text = payload.get("issuedAt")
    issued = parse_js_iso(issued_text) if isinstance(issued_text, str) else None
    if issued is None:
        return refuse("bad issuedAt")
    if issued > now + CLOCK_SKEW:
        return refuse("issued in the future", issued)
    if now - issued > max_age:
        # An old list cannot tell about revocations since; an attacker could replay one forever.
        return refuse("stale", issued)
    return RevocationsCheck(True, "ok", frozenset(revoked), issued, opened.kid, frozenset(revoked_keys))
