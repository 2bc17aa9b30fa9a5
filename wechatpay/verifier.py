"""Choose WeChat Pay's verification key by serial and authenticate signed responses and notifications."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from . import crypto
from .errors import VerificationError

log = logging.getLogger(__name__)

PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
SIGNATURE_TYPE_RSA = "WECHATPAY2-SHA256-RSA2048"
# WeChat deliberately sends, now and then, a wrong signature that starts with this (签名探测).
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"
DEFAULT_WINDOW = 300
# An unknown serial may trigger a certificate download this often at most, per process.
UNKNOWN_SERIAL_REFRESH_INTERVAL = 60.0

# How responses and notifications are verified: LBPAY_WECHATPAY_VERIFY.
MODE_BOTH = "both"
MODE_PUBLIC_KEY = "public_key"
MODE_CERTIFICATE = "certificate"
VERIFY_MODES = (MODE_BOTH, MODE_PUBLIC_KEY, MODE_CERTIFICATE)

HEADER_TIMESTAMP = "Wechatpay-Timestamp"
HEADER_NONCE = "Wechatpay-Nonce"
HEADER_SIGNATURE = "Wechatpay-Signature"
HEADER_SERIAL = "Wechatpay-Serial"
HEADER_SIGNATURE_TYPE = "Wechatpay-Signature-Type"

_REQUIRED_HEADERS = (HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE, HEADER_SERIAL)
_WATCHED_HEADERS = {name.lower(): name for name in (*_REQUIRED_HEADERS, HEADER_SIGNATURE_TYPE)}
# ASCII only: str.isdigit() and \d also accept other scripts' digits, which int() would then parse.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Real serials are 40 hex digits; the bound keeps int() cheap on hostile input.
_CERT_SERIAL = re.compile(r"[0-9A-Fa-f]{1,64}")


class HeaderSource(Protocol):
    """Response or request headers: a Mapping, or a multi-valued object like werkzeug's Headers."""

    def items(self) -> Iterable[tuple[str, str]]:
        """Return every (name, value) pair, repeated names included."""
        ...


class Verifier(Protocol):
    """Anything that maps a ``Wechatpay-Serial`` value to the RSA public key it names."""

    def public_key_for(self, serial: str) -> RSAPublicKey | None:
        """Return the public key for ``serial``, or None when it is not known."""
        ...


class PublicKeyVerifier:
    """One WeChat Pay public key (public-key mode), selected by its ``PUB_KEY_ID_…`` id."""

    def __init__(self, key_id: str, public_key: RSAPublicKey) -> None:
        self.key_id = key_id
        self.public_key = public_key

    def public_key_for(self, serial: str) -> RSAPublicKey | None:
        """Return the key when ``serial`` is exactly this key's id."""
        return self.public_key if serial == self.key_id else None

    def __repr__(self) -> str:
        return f"PublicKeyVerifier({self.key_id!r})"


def _normalise_serial(serial: str) -> str | None:
    """Return a certificate serial in the store's upper-case hex form, or None if it is not one."""
    if not _CERT_SERIAL.fullmatch(serial):
        return None
    # Leading zeros and case differ between writers; the number is what identifies the certificate.
    return format(int(serial, 16), "X")


class CertificateStore:
    """Platform certificates by serial, refreshed at most once per interval when an unknown serial appears.

    ``refresh`` is the download (``WeChatPayClient.download_certificates``); a store made
    without one gets it from the client it is given to (``set_source``).
    """

    def __init__(
        self,
        certificates: Iterable[x509.Certificate] = (),
        refresh: Callable[[], Iterable[x509.Certificate]] | None = None,
        min_refresh_interval: float = UNKNOWN_SERIAL_REFRESH_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._certificates: dict[str, x509.Certificate] = {}
        self._refresh = refresh
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._last_refresh: float | None = None
        self.last_success: float | None = None
        # Re-entrant because the refresh callable may itself verify a response against this store.
        self._lock = threading.RLock()
        for certificate in certificates:
            self.add(certificate)

    @property
    def has_source(self) -> bool:
        """Tell whether the store knows how to download certificates."""
        return self._refresh is not None

    def set_source(self, refresh: Callable[[], Iterable[x509.Certificate]]) -> None:
        """Name the download that fills the store (bound late: the client verifies with this very store)."""
        self._refresh = refresh

    def refresh(self) -> int:
        """Download the platform certificates now and keep them; return how many the answer held.

        For the scheduler (WeChat asks merchants to refresh at least every 12 hours); unlike
        the refresh an unknown serial triggers, a failure is raised to the caller.
        """
        if self._refresh is None:
            raise RuntimeError("the certificate store has no download source")
        with self._lock:
            self._last_refresh = self._clock()
            fresh = [c for c in self._refresh() if isinstance(c, x509.Certificate)]
            for certificate in fresh:
                self.add(certificate)
            self.last_success = self._clock()
            return len(fresh)

    def add(self, certificate: x509.Certificate) -> None:
        """Store ``certificate`` under its serial; certificates already held stay valid."""
        with self._lock:
            self._certificates[crypto.certificate_serial(certificate)] = certificate

    def serials(self) -> list[str]:
        """Return the serials held, sorted."""
        with self._lock:
            return sorted(self._certificates)

    def certificates(self) -> list[x509.Certificate]:
        """Return the certificates held, in serial order."""
        with self._lock:
            return [self._certificates[serial] for serial in sorted(self._certificates)]

    def latest_expiry(self) -> float | None:
        """Return the Unix time at which the longest-lived certificate expires, or None if empty."""
        with self._lock:
            if not self._certificates:
                return None
            return max(c.not_valid_after_utc.timestamp() for c in self._certificates.values())

    def expiring_before(self, ts: float) -> bool:
        """Tell whether no certificate held is still valid at ``ts`` (time to download new ones)."""
        latest = self.latest_expiry()
        return latest is None or latest < ts

    def public_key_for(self, serial: str) -> RSAPublicKey | None:
        """Return the key of certificate ``serial``, refreshing once per interval if it is unknown."""
        key = _normalise_serial(serial)
        if key is None:
            # Not a certificate serial at all (e.g. PUB_KEY_ID_…): no download could ever find it.
            return None
        with self._lock:
            certificate = self._certificates.get(key)
            if certificate is None and self._refresh_allowed():
                self._run_refresh()
                certificate = self._certificates.get(key)
        return None if certificate is None else _rsa_key(certificate)

    def _refresh_allowed(self) -> bool:
        if self._refresh is None:
            return False
        now = self._clock()
        return self._last_refresh is None or now - self._last_refresh >= self._min_refresh_interval

    def _run_refresh(self) -> None:
        assert self._refresh is not None
        # Stamp before calling so a failing or re-entrant refresh cannot be retried in a loop.
        self._last_refresh = self._clock()
        try:
            fresh = list(self._refresh())
        except Exception:  # an attacker-chosen serial must never turn into a 500
            log.exception("platform certificate refresh failed")
            return
        for certificate in fresh:
            if isinstance(certificate, x509.Certificate):
                self.add(certificate)
        self.last_success = self._clock()


def _rsa_key(certificate: x509.Certificate) -> RSAPublicKey | None:
    key = certificate.public_key()
    return key if isinstance(key, RSAPublicKey) else None


class CombinedVerifier:
    """Several verifiers at once (key rotation, certificate→public-key migration), chosen by serial form."""

    def __init__(self, *verifiers: Verifier) -> None:
        self.verifiers = verifiers

    def public_key_for(self, serial: str) -> RSAPublicKey | None:
        """Return the first key found; ``PUB_KEY_ID_`` serials skip certificate stores."""
        by_key_id = serial.startswith(PUBLIC_KEY_ID_PREFIX)
        for verifier in self.verifiers:
            # A public key id never names a certificate, so don't let it trigger a certificate download.
            if by_key_id and isinstance(verifier, CertificateStore):
                continue
            key = verifier.public_key_for(serial)
            if key is not None:
                return key
        return None


class PlatformVerifier:
    """WeChat Pay's keys as the merchant configured them: public key, certificates, or both at once.

    ``both`` is the gray phase of a switch from certificates to the public key: WeChat
    signs notifications with either, and responses with the certificate until the
    merchant turns the switch on, so each message is verified by whichever key its
    ``Wechatpay-Serial`` names (``PUB_KEY_ID_…`` → the public key, hex → the certificate
    store, downloaded lazily on the first certificate serial). ``public_key`` ends the
    gray phase: no certificate store exists. ``certificate`` is the pre-switch setup.
    """

    def __init__(
        self,
        mode: str,
        *,
        public_key: PublicKeyVerifier | None = None,
        certificates: CertificateStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in VERIFY_MODES:
            raise ValueError(f"mode must be one of {', '.join(VERIFY_MODES)}, got {mode!r}")
        if mode != MODE_CERTIFICATE and public_key is None:
            raise ValueError(f"mode {mode} needs the WeChat Pay public key and its id")
        if mode == MODE_PUBLIC_KEY and certificates is not None:
            raise ValueError("mode public_key keeps no certificate store")
        if mode != MODE_PUBLIC_KEY and certificates is None:
            certificates = CertificateStore(clock=clock)
        self.mode = mode
        self.public_key = public_key if mode != MODE_CERTIFICATE else None
        self.certificates = certificates

    @property
    def request_serial(self) -> str | None:
        """The ``Wechatpay-Serial`` to send so WeChat signs responses with the public key (after the switch)."""
        return self.public_key.key_id if self.public_key is not None else None

    def public_key_for(self, serial: str) -> RSAPublicKey | None:
        """Return the key ``serial`` names, from the public key or the certificate store by its form."""
        if serial.startswith(PUBLIC_KEY_ID_PREFIX):
            return self.public_key.public_key_for(serial) if self.public_key is not None else None
        return self.certificates.public_key_for(serial) if self.certificates is not None else None

    def __repr__(self) -> str:
        return f"PlatformVerifier({self.mode!r}, public_key={self.public_key!r})"


def is_probe(headers: HeaderSource | Mapping[str, str]) -> bool:
    """Tell whether a message carries one of WeChat's deliberate wrong signatures (``WECHATPAY/SIGNTEST/``)."""
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == HEADER_SIGNATURE.lower() and isinstance(value, str):
            if value.startswith(PROBE_PREFIX):
                return True
    return False


def _signed_headers(headers: HeaderSource) -> dict[str, str]:
    """Pick the Wechatpay-* headers case-insensitively; a repeated one is refused."""
    found: dict[str, str] = {}
    for raw_name, value in headers.items():
        if not isinstance(raw_name, str):
            continue
        name = _WATCHED_HEADERS.get(raw_name.lower())
        if name is None:
            continue
        if name in found:
            # Two values leave it ambiguous which one was signed.
            raise VerificationError("bad_header", f"{name} given twice")
        if not isinstance(value, str):
            raise VerificationError("bad_header", name)
        found[name] = value
    return found


def verify_signed(
    headers: HeaderSource | Mapping[str, str],
    body: bytes,
    verifier: Verifier,
    now: float,
    window: int = DEFAULT_WINDOW,
) -> str:
    """Authenticate a WeChat Pay response or notification and return the serial whose key signed it."""
    found = _signed_headers(headers)
    for name in _REQUIRED_HEADERS:
        if not found.get(name, "").strip():
            raise VerificationError("missing_header", name)
    timestamp = found[HEADER_TIMESTAMP]
    nonce = found[HEADER_NONCE]
    serial = found[HEADER_SERIAL]
    signature = found[HEADER_SIGNATURE]

    if not _TIMESTAMP.fullmatch(timestamp):
        raise VerificationError("bad_header", HEADER_TIMESTAMP)
    # A line break in the nonce would let bytes slide between the nonce and body lines of the signed
    # message; lone surrogates could not even be encoded. Both are non-printable.
    if not nonce.isprintable():
        raise VerificationError("bad_header", HEADER_NONCE)

    signature_type = found.get(HEADER_SIGNATURE_TYPE)
    if signature_type is not None and signature_type != SIGNATURE_TYPE_RSA:
        raise VerificationError("bad_signature_type", signature_type[:64])

    # Two-sided: a far-future timestamp would otherwise keep a captured message replayable for longer.
    if abs(now - int(timestamp)) > window:
        raise VerificationError("stale_timestamp", f"{timestamp} vs now {int(now)}")

    public_key = verifier.public_key_for(serial)
    if public_key is None:
        raise VerificationError("unknown_serial", serial[:80])

    message = crypto.response_message(timestamp, nonce, body)
    if not crypto.signature_matches(public_key, message, signature):
        raise VerificationError("bad_signature", serial[:80])
    return serial
