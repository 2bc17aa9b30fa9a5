"""The simulated platform's identity: its key, its certificate, signed answers, and merchant request checks."""

from __future__ import annotations

import base64
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


class PlatformCertificate:
    """One platform certificate and the private key that signs as it."""

    def __init__(self, key: rsa.RSAPrivateKey, now: float) -> None:
        self.private_key = key
        self.certificate = _self_signed_certificate(key, now)
        self.serial = certificate_serial(self.certificate)
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)


class PlatformIdentity:
    """The keys WeChat Pay signs with, and the merchant key it verifies requests with.

    The platform has a WeChat Pay public key (``public_key_id``, signed with
    ``platform_private_key_pem``) and platform certificates; the first certificate's key
    is ``certificate_private_key_pem``, or the platform key when none is given.
    ``rotate_certificate`` adds a new certificate that signs from then on.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.private_key = load_private_key(config.platform_private_key_pem)
        self.merchant_key = load_public_key(config.merchant_public_key_pem)
        self.public_key_id = config.public_key_id
        certificate_key = (
            load_private_key(config.certificate_private_key_pem)
            if config.certificate_private_key_pem is not None else self.private_key
        )
        self._clock = config.clock
        self.certificates = [PlatformCertificate(certificate_key, config.clock())]
        self.current = self.certificates[0]

    @property
    def certificate(self) -> x509.Certificate:
        """The platform certificate that signs now."""
        return self.current.certificate

    @property
    def certificate_serial(self) -> str:
        """The serial of the platform certificate that signs now."""
        return self.current.serial

    @property
    def certificate_pem(self) -> bytes:
        """The PEM of the platform certificate that signs now."""
        return self.current.pem

    @property
    def serial(self) -> str:
        """The ``Wechatpay-Serial`` the simulator signs with by default."""
        return self.public_key_id or self.certificate_serial

    def knows_serial(self, serial: str) -> bool:
        """Tell whether a request's ``Wechatpay-Serial`` names one of the platform's keys."""
        return serial == self.public_key_id or any(c.serial == serial.upper() for c in self.certificates)

    def rotate_certificate(self, activate: bool = True) -> PlatformCertificate:
        """Issue a new platform certificate with a new key; it signs from now on when ``activate``."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fresh = PlatformCertificate(key, self._clock())
        self.certificates.append(fresh)
        if activate:
            self.current = fresh
        return fresh

    def key_for(self, serial: str) -> rsa.RSAPrivateKey:
        """Return the private key that signs as ``serial`` (the public-key id or a certificate serial)."""
        if serial == self.public_key_id:
            return self.private_key
        for certificate in self.certificates:
            if certificate.serial == serial.upper():
                return certificate.private_key
        return self.current.private_key

    def sign(self, message: bytes, serial: str | None = None) -> str:
        """Return the SHA256withRSA signature of ``message`` with the key ``serial`` names (default: ``serial``)."""
        return sign(self.key_for(serial or self.serial), message)

    def signed_headers(
        self, body: bytes, timestamp: int, serial: str | None = None, probe: bool = False
    ) -> dict[str, str]:
        """Return the Wechatpay-* headers that authenticate ``body`` (or a deliberate probe signature)."""
        stamp = str(timestamp)
        nonce = make_nonce(32)
        serial = serial or self.serial
        signature = probe_signature() if probe else self.sign(response_message(stamp, nonce, body), serial)
        return {
            "Wechatpay-Timestamp": stamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial,
        }


def probe_signature() -> str:
    """Return a signature as WeChat's probes (签名探测) have it: the SIGNTEST prefix and random base64."""
    return "WECHATPAY/SIGNTEST/" + base64.b64encode(secrets.token_bytes(192)).decode("ascii")


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
