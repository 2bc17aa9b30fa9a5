"""The simulated platform's identity: its key, its certificate, signed answers, and merchant request checks."""

from __future__ import annotations

import datetime as dt
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from wechatpay.crypto import (
    certificate_serial,
    load_private_key,
    load_public_key,
    make_nonce,
    request_message,
    response_message,
    sign,
    signature_matches,
)

from .config import SandboxConfig
from .refusal import Refusal

SCHEME = "WECHATPAY2-SHA256-RSA2048"
AUTH_PARAMS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
CLOCK_WINDOW = 300
CERTIFICATE_LIFETIME = dt.timedelta(days=5 * 365)


class PlatformIdentity:
    """The keys WeChat Pay signs with, and the merchant key it verifies requests with."""

    def __init__(self, config: SandboxConfig) -> None:
        self.private_key = load_private_key(config.platform_private_key_pem)
        self.merchant_key = load_public_key(config.merchant_public_key_pem)
        self.public_key_id = config.public_key_id
        self.certificate = _self_signed_certificate(self.private_key, config.clock())
        self.certificate_serial = certificate_serial(self.certificate)
        self.certificate_pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def serial(self) -> str:
        """The ``Wechatpay-Serial`` the simulator signs with by default."""
        return self.public_key_id or self.certificate_serial

    def knows_serial(self, serial: str) -> bool:
        """Tell whether a request's ``Wechatpay-Serial`` names one of the platform's keys."""
        return serial in {self.public_key_id, self.certificate_serial}

    def sign(self, message: bytes) -> str:
        """Return the SHA256withRSA signature of ``message`` with the platform key."""
        return sign(self.private_key, message)

    def signed_headers(self, body: bytes, timestamp: int, serial: str | None = None) -> dict[str, str]:
        """Return the Wechatpay-* headers that authenticate ``body``."""
        stamp = str(timestamp)
        nonce = make_nonce(32)
        return {
            "Wechatpay-Timestamp": stamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": self.sign(response_message(stamp, nonce, body)),
            "Wechatpay-Serial": serial or self.serial,
        }


def _self_signed_certificate(key: rsa.RSAPrivateKey, now: float) -> x509.Certificate:
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Tenpay.com CA Center (sandbox)"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Sandbox Platform"),
    ])
    start = dt.datetime.fromtimestamp(now, dt.timezone.utc) - dt.timedelta(days=1)
    # 40 upper-case hex digits, like a real platform certificate serial.
    serial = (1 << 156) | secrets.randbits(156)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + CERTIFICATE_LIFETIME)
        .sign(key, hashes.SHA256())
    )


def parse_authorization(header: str) -> dict[str, str]:
    """Split an Authorization header into its parameters; raise Refusal if it is not WeChat's scheme."""
    scheme, _, rest = header.partition(" ")
    if scheme != SCHEME:
        raise _sign_error("authorization", "scheme must be " + SCHEME)
    params: dict[str, str] = {}
    for piece in rest.split(","):
        key, sep, value = piece.strip().partition("=")
        if not sep or len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
            raise _sign_error("authorization", f"malformed parameter {piece.strip()[:40]!r}")
        params[key] = value[1:-1]
    missing = [name for name in AUTH_PARAMS if not params.get(name)]
    if missing:
        raise _sign_error(missing[0], f"missing parameter {missing[0]}")
    return params


def check_request_signature(
    *,
    header: str | None,
    method: str,
    canonical_urls: list[str],
    body: bytes,
    identity: PlatformIdentity,
    mchid: str,
    merchant_serial: str,
    now: float,
) -> str:
    """Authenticate a merchant request; return its mchid or raise Refusal(401, SIGN_ERROR).

    ``canonical_urls`` lists the URL forms accepted (the wire form first).
    """
    if not header:
        raise _sign_error("authorization", "missing Authorization header")
    params = parse_authorization(header)
    if params["mchid"] != mchid:
        raise _sign_error("mchid", "unknown mchid")
    if params["serial_no"].upper() != merchant_serial.upper():
        raise _sign_error("serial_no", "serial_no does not match the merchant certificate")
    stamp = params["timestamp"]
    if not stamp.isdigit() or abs(now - int(stamp)) > CLOCK_WINDOW:
        raise _sign_error("timestamp", "timestamp expired or malformed")
    messages = [
        request_message(method, url, stamp, params["nonce_str"], body) for url in canonical_urls
    ]
    if not any(signature_matches(identity.merchant_key, m, params["signature"]) for m in messages):
        raise _sign_error("signature", "sign not match", messages[0], method, canonical_urls[0])
    return params["mchid"]


def _sign_error(
    field: str, issue: str, message: bytes | None = None, method: str = "", url: str = ""
) -> Refusal:
    detail: dict[str, object] = {
        "detail": {"issue": issue},
        "field": field,
        "location": "authorization",
    }
    if message is not None:
        detail["sign_information"] = {
            "method": method,
            "sign_message_length": len(message),
            "truncated_sign_message": message[:120].decode("utf-8", "replace"),
            "url": url,
        }
    return Refusal(401, "SIGN_ERROR", "错误的签名，验签失败", detail)
