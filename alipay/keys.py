"""The two ways Alipay lets a merchant check its signatures: a public key, or public-key certificates."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from . import signing
from .errors import ConfigError, VerificationError


@dataclass(frozen=True)
class PublicKeyMode:
    """公钥模式: one Alipay public key checks every answer and notification."""

    alipay_public_key: RSAPublicKey

    def request_params(self) -> dict[str, str]:
        """The common parameters this mode adds to every request (none)."""
        return {}

    def verify(self, content: str, signature: str, alipay_cert_sn: str | None = None) -> None:
        """Check Alipay's signature over ``content``; the cert SN an answer names is not used here."""
        signing.verify(self.alipay_public_key, content, signature)


@dataclass(frozen=True)
class CertMode:
    """公钥证书模式: requests name our cert's SN and the root's; answers name the Alipay cert that signed."""

    app_cert_sn: str
    alipay_root_cert_sn: str
    alipay_certs: dict[str, RSAPublicKey] = field(default_factory=dict)

    @classmethod
    def from_pem(cls, app_cert: bytes | str, alipay_cert: bytes | str, alipay_root_cert: bytes | str) -> CertMode:
        """Read the three files Alipay's platform hands out: appCertPublicKey, alipayCertPublicKey_RSA2, alipayRootCert."""
        app = signing.load_certificates(app_cert, "app public-key certificate")
        chain = signing.load_certificates(alipay_cert, "Alipay public-key certificate")
        roots = signing.load_certificates(alipay_root_cert, "Alipay root certificate")
        if not app or not chain:
            raise ConfigError("Alipay certificates", "a certificate file is empty")
        _check_chain(chain, roots)
        leaf = chain[0]
        key = leaf.public_key()
        if not isinstance(key, RSAPublicKey):
            raise ConfigError("Alipay public-key certificate", "does not hold an RSA key")
        return cls(app_cert_sn=signing.cert_sn(app[0]), alipay_root_cert_sn=signing.root_cert_sn(roots),
                   alipay_certs={signing.cert_sn(leaf): key})

    def request_params(self) -> dict[str, str]:
        """``app_cert_sn`` and ``alipay_root_cert_sn``, sent (and signed) with every request."""
        return {"app_cert_sn": self.app_cert_sn, "alipay_root_cert_sn": self.alipay_root_cert_sn}

    def verify(self, content: str, signature: str, alipay_cert_sn: str | None = None) -> None:
        """Check the signature with the Alipay certificate the answer names (or ours, if it names none)."""
        if alipay_cert_sn is None:
            if len(self.alipay_certs) != 1:
                raise VerificationError("unknown_cert", "the answer names no alipay_cert_sn")
            key = next(iter(self.alipay_certs.values()))
        else:
            found = self.alipay_certs.get(alipay_cert_sn)
            if found is None:
                raise VerificationError("unknown_cert", f"alipay_cert_sn {alipay_cert_sn[:40]!r} is not ours")
            key = found
        signing.verify(key, content, signature)


Keys = PublicKeyMode | CertMode


def _check_chain(chain: list[x509.Certificate], roots: list[x509.Certificate]) -> None:
    """Every certificate of Alipay's file must be issued by the next one or by a root we were given."""
    issuers = chain[1:] + roots
    for cert in chain:
        for candidate in issuers:
            if candidate is cert or candidate.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(candidate)
            except (InvalidSignature, ValueError, TypeError):  # a bad signature, or an algorithm it cannot check
                continue
            break
        else:
            raise ConfigError("Alipay public-key certificate",
                              f"{cert.subject.rfc4514_string()} is not issued by the Alipay root certificate")
