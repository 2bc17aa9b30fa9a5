"""RSA2 (SHA256withRSA) over Alipay's sorted parameter string, the raw answer node, and certificate SNs."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .errors import ConfigError, VerificationError

SIGN_TYPE = "RSA2"
# The root certificate file holds Alipay's roots of several algorithms; only RSA-signed ones count
# in alipay_root_cert_sn (sha1WithRSA and sha256WithRSA; the SM2 root is left out).
_RSA_SIGNATURE_OIDS = frozenset({"1.2.840.113549.1.1.5", "1.2.840.113549.1.1.11"})


def content_to_sign(params: Mapping[str, str], *, leave_out: tuple[str, ...] = ("sign",)) -> str:
    """The string Alipay signs: ``k=v`` pairs sorted by key, joined with ``&``, empty values and ``leave_out`` dropped.

    Values are taken as they are (decoded, never URL-encoded). A request leaves out ``sign``;
    a notification leaves out ``sign`` and ``sign_type``.
    """
    pairs = sorted((k, v) for k, v in params.items() if k not in leave_out and v is not None and v != "")
    return "&".join(f"{k}={v}" for k, v in pairs)


def sign(private_key: RSAPrivateKey, content: str) -> str:
    """Sign ``content`` (UTF-8) with SHA256withRSA, PKCS#1 v1.5, and return it base64-encoded."""
    raw = private_key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def verify(public_key: RSAPublicKey, content: str, signature: str) -> None:
    """Check a base64 SHA256withRSA signature over ``content`` (UTF-8); raise VerificationError if it fails."""
    if not signature:
        raise VerificationError("missing_signature")
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("bad_signature", "not base64") from exc
    try:
        public_key.verify(raw, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise VerificationError("bad_signature") from exc


def load_private_key(data: bytes | str, setting: str = "app private key") -> RSAPrivateKey:
    """Load the app's RSA private key: PEM (PKCS#1 or PKCS#8) or the bare base64 Alipay's key tool prints."""
    key = _load(data, setting, private=True)
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError(setting, "not an RSA private key")
    return key


def load_public_key(data: bytes | str, setting: str = "Alipay public key") -> RSAPublicKey:
    """Load Alipay's RSA public key: PEM or the bare base64 shown on Alipay's open platform."""
    key = _load(data, setting, private=False)
    if not isinstance(key, RSAPublicKey):
        raise ConfigError(setting, "not an RSA public key")
    return key


def _load(data: bytes | str, setting: str, *, private: bool) -> object:
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    try:
        if "-----BEGIN" in text:
            pem = text.encode("ascii")
            return (serialization.load_pem_private_key(pem, password=None) if private
                    else serialization.load_pem_public_key(pem))
        der = base64.b64decode("".join(text.split()), validate=True)
        return (serialization.load_der_private_key(der, password=None) if private
                else serialization.load_der_public_key(der))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(setting, "not a readable RSA key") from exc


def load_certificates(data: bytes | str, setting: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file (Alipay's root file holds several)."""
    pem = data.encode("ascii") if isinstance(data, str) else data
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(setting, "not a PEM certificate file") from exc
    return certificates


def cert_sn(certificate: x509.Certificate) -> str:
    """Alipay's certificate SN: MD5 (hex) of the issuer's distinguished name followed by the decimal serial.

    The name is written most specific part first (``CN=…,OU=…,O=…,C=…``, as RFC 4514 does),
    which is the form Alipay's own SDKs compute.
    """
    issuer = certificate.issuer.rfc4514_string()
    return hashlib.md5(f"{issuer}{certificate.serial_number}".encode("utf-8")).hexdigest()


def root_cert_sn(certificates: list[x509.Certificate]) -> str:
    """``alipay_root_cert_sn``: the SNs of the RSA-signed roots in the file, joined with ``_``."""
    sns = [cert_sn(c) for c in certificates if c.signature_algorithm_oid.dotted_string in _RSA_SIGNATURE_OIDS]
    if not sns:
        raise ConfigError("Alipay root certificate", "holds no RSA-signed certificate")
    return "_".join(sns)


def response_node(raw: str, node: str) -> str | None:
    """The exact text of the value of top-level key ``node`` in a JSON answer, as received, or None.

    Alipay signs the characters of the ``…_response`` object as it sent them, so the object
    is cut out of the text, not re-serialized. The scan follows JSON's strings (quotes,
    escapes), so a brace inside a subject cannot move the cut.
    """
    i, n, depth = 0, len(raw), 0
    while i < n:
        c = raw[i]
        if c == '"':
            end = _string_end(raw, i)
            if depth == 1:
                key = raw[i + 1:end]
                j = end + 1
                while j < n and raw[j] in " \t\r\n":
                    j += 1
                if j < n and raw[j] == ":":
                    j += 1
                    while j < n and raw[j] in " \t\r\n":
                        j += 1
                    if key == node:
                        return raw[j:_value_end(raw, j)] if j < n else None
                    i = _value_end(raw, j)
                    continue
            i = end + 1
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
        i += 1
    return None


def _string_end(raw: str, start: int) -> int:
    """Index of the quote closing the JSON string that opens at ``start``."""
    i = start + 1
    while i < len(raw):
        if raw[i] == "\\":
            i += 2
            continue
        if raw[i] == '"':
            return i
        i += 1
    return len(raw)


def _value_end(raw: str, start: int) -> int:
    """Index just past the JSON value that starts at ``start`` (object, array, string or scalar)."""
    if start >= len(raw):
        return start
    if raw[start] == '"':
        return _string_end(raw, start) + 1
    if raw[start] not in "{[":
        i = start
        while i < len(raw) and raw[i] not in ",}] \t\r\n":
            i += 1
        return i
    depth, i = 0, start
    while i < len(raw):
        c = raw[i]
        if c == '"':
            i = _string_end(raw, i) + 1
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(raw)
