"""Authenticate, parse and decrypt WeChat Pay notifications and platform-certificate downloads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from . import crypto
from .errors import DecryptError, MalformedError, UnexpectedPlaintextError
from .verifier import DEFAULT_WINDOW, HeaderSource, Verifier, verify_signed

RESOURCE_TYPE = "encrypt-resource"
ALGORITHM = "AEAD_AES_256_GCM"


@dataclass(frozen=True)
class Notification:
    """A verified notification with its resource decrypted."""

    id: str
    create_time: str
    event_type: str
    resource_type: str
    summary: str
    original_type: str
    resource: dict[str, Any]
    serial: str


def _load_json(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data)
    # RecursionError: deeply nested arrays are valid JSON that the parser cannot finish.
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"{what} is not JSON") from exc


def _string(container: Mapping[str, Any], field: str, where: str, *, required: bool = True) -> str:
    value = container.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise MalformedError(f"{where}.{field} is missing or not a string")
    return value


def _object(container: Mapping[str, Any], field: str, where: str) -> dict[str, Any]:
    value = container.get(field)
    if not isinstance(value, dict):
        raise MalformedError(f"{where}.{field} is missing or not an object")
    return value


def _decrypt(encrypted: Mapping[str, Any], where: str, apiv3_keys: Sequence[bytes]) -> bytes:
    """Check an encrypted block's shape and decrypt it with the first APIv3 key that opens it."""
    algorithm = _string(encrypted, "algorithm", where)
    if algorithm != ALGORITHM:
        raise MalformedError(f"{where}.algorithm is {algorithm[:40]!r}, expected {ALGORITHM}")
    ciphertext = _string(encrypted, "ciphertext", where)
    nonce = _string(encrypted, "nonce", where)
    associated_data = _string(encrypted, "associated_data", where)
    if not apiv3_keys:
        raise DecryptError("no APIv3 key configured")
    # Two keys are configured while the merchant switches APIv3 keys; GCM's tag tells which one fits.
    for key in apiv3_keys:
        try:
            return crypto.aead_decrypt(key, nonce, associated_data, ciphertext)
        except DecryptError:
            continue
    raise DecryptError(f"{where} does not decrypt with any of the {len(apiv3_keys)} APIv3 key(s)")


def parse_notification(
    body: bytes,
    headers: HeaderSource | Mapping[str, str],
    verifier: Verifier,
    apiv3_keys: Sequence[bytes],
    now: float,
    window: int = DEFAULT_WINDOW,
) -> Notification:
    """Verify a notification over its raw body, then parse it and decrypt its resource.

    Raises VerificationError (not proven to come from WeChat Pay), MalformedError (bad
    envelope), DecryptError (no APIv3 key opens the resource) or its subclass
    UnexpectedPlaintextError (it opened, but the plaintext is not a JSON object).
    """
    serial = verify_signed(headers, body, verifier, now, window)

    envelope = _load_json(body, "notification body")
    if not isinstance(envelope, dict):
        raise MalformedError("notification body is not a JSON object")
    event_id = _string(envelope, "id", "notification")
    event_type = _string(envelope, "event_type", "notification")
    resource_type = _string(envelope, "resource_type", "notification")
    if resource_type != RESOURCE_TYPE:
        raise MalformedError(f"resource_type is {resource_type[:40]!r}, expected {RESOURCE_TYPE}")
    create_time = _string(envelope, "create_time", "notification", required=False)
    summary = _string(envelope, "summary", "notification", required=False)
    encrypted = _object(envelope, "resource", "notification")
    original_type = _string(encrypted, "original_type", "resource", required=False)

    plaintext = _decrypt(encrypted, "resource", apiv3_keys)
    try:
        resource = json.loads(plaintext)
    except (ValueError, RecursionError) as exc:
        raise UnexpectedPlaintextError("decrypted resource is not JSON") from exc
    if not isinstance(resource, dict):
        raise UnexpectedPlaintextError("decrypted resource is not a JSON object")

    return Notification(
        id=event_id,
        create_time=create_time,
        event_type=event_type,
        resource_type=resource_type,
        summary=summary,
        original_type=original_type,
        resource=resource,
        serial=serial,
    )


def _serial_number(serial_no: str) -> int | None:
    text = serial_no.strip()
    if not text or len(text) > 64:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def decrypt_certificates(body: bytes | dict[str, Any], apiv3_keys: Sequence[bytes]) -> list[x509.Certificate]:
    """Decrypt the platform certificates of a ``GET /v3/certificates`` answer, checking each serial."""
    # Only serial_no and encrypt_certificate are read: validity comes from the certificate itself,
    # so the "effective_time " (trailing space) key of old answers does no harm.
    document = body if isinstance(body, dict) else _load_json(body, "certificates body")
    if not isinstance(document, dict):
        raise MalformedError("certificates body is not a JSON object")
    entries = document.get("data")
    if not isinstance(entries, list):
        raise MalformedError("certificates body has no data list")
    certificates: list[x509.Certificate] = []
    for index, entry in enumerate(entries):
        where = f"data[{index}]"
        if not isinstance(entry, dict):
            raise MalformedError(f"{where} is not an object")
        serial_no = _string(entry, "serial_no", where)
        encrypted = _object(entry, "encrypt_certificate", where)
        pem = _decrypt(encrypted, f"{where}.encrypt_certificate", apiv3_keys)
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise UnexpectedPlaintextError(f"{where} did not decrypt to a PEM certificate") from exc
        # The serial is what responses and notifications name, so a mismatch would bind a key to the wrong name.
        if _serial_number(serial_no) != certificate.serial_number:
            raise MalformedError(
                f"{where}.serial_no {serial_no[:64]!r} != certificate serial {crypto.certificate_serial(certificate)}"
            )
        certificates.append(certificate)
    return certificates
