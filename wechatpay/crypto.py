"""The APIv3 cryptographic primitives: SHA256withRSA, AEAD_AES_256_GCM, message building."""

from __future__ import annotations

import base64
import binascii
import functools
import secrets
import string

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptError

_NONCE_ALPHABET = string.ascii_letters + string.digits


def make_nonce(length: int = 32) -> str:
    """Return a random nonce of ``length`` characters from [0-9A-Za-z]."""
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


@functools.lru_cache(maxsize=16)
def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Parse a PEM RSA private key (PKCS#8 or PKCS#1); raise ValueError otherwise.

    Parsing validates the key, which costs tens of milliseconds: the same PEM is parsed once per
    process (a gunicorn worker and its CLI or test apps), and the key object is immutable.
    """
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Parse a PEM RSA public key (SPKI) or the public key of a PEM certificate."""
    # Typed as object: the certificate and bare-key loaders return different unions of key types.
    key: object
    if b"BEGIN CERTIFICATE" in pem:
        key = x509.load_pem_x509_certificate(pem).public_key()
    else:
        key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def certificate_serial(cert: x509.Certificate) -> str:
    """Return a certificate's serial number as WeChat writes it: upper-case hex."""
    return format(cert.serial_number, "X")


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """Return the standard base64 SHA256withRSA (PKCS#1 v1.5) signature of ``message``."""
    raw = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def signature_matches(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """Tell whether ``signature_b64`` is a valid SHA256withRSA signature of ``message``."""
    try:
        raw = binascii.a2b_base64(signature_b64, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(raw, message, _PKCS1V15, _SHA256)
    except InvalidSignature:
        return False
    return True


# Made once: every notification verifies with these (base64 is decoded strictly, as b64decode's
# validate did, without its per-call regex; the AES key schedule is made once per APIv3 key).
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


@functools.lru_cache(maxsize=8)
def _aesgcm(key: bytes) -> AESGCM:
    return AESGCM(key)


def request_message(method: str, canonical_url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """Build the five-line message a merchant signs for an API request."""
    head = f"{method.upper()}\n{canonical_url}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """Build the three-line message WeChat Pay signs for a response or notification."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def aead_decrypt(key: bytes, nonce: str, associated_data: str, ciphertext_b64: str) -> bytes:
    """Decrypt an AEAD_AES_256_GCM resource (ciphertext followed by its 16-byte tag)."""
    try:
        data = binascii.a2b_base64(ciphertext_b64, strict_mode=True)
        return _aesgcm(key).decrypt(nonce.encode(), data, associated_data.encode())
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise DecryptError(f"resource does not decrypt: {type(exc).__name__}") from exc


def aead_encrypt(key: bytes, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """Encrypt ``plaintext`` as WeChat Pay does; return base64 of ciphertext followed by tag."""
    data = AESGCM(key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return base64.b64encode(data).decode("ascii")


def encrypt_sensitive(public_key: rsa.RSAPublicKey, text: str) -> str:
    """Encrypt a sensitive field (a card number, a name) for WeChat Pay: RSA-OAEP with SHA-1, Base64."""
    ciphertext = public_key.encrypt(
        text.encode("utf-8"), padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    return base64.b64encode(ciphertext).decode("ascii")
