"""Keys, certificates, the Alipay simulator on a loopback port, and python-alipay-sdk loaded as a test peer."""

from __future__ import annotations

import contextlib
import datetime as dt
import warnings
from collections.abc import Iterator
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from alipay.sandbox import AlipaySandboxConfig, create_alipay_sandbox

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = ROOT / ".venv" / "peers" / "python-alipay-sdk"
APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"


def pem_private(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_public(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _name(cn: str) -> x509.Name:
    # The four parts Alipay's certificates carry, written C, O, OU, CN as in theirs.
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ant Financial"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: x509.Name, issuer: x509.Name, public: Any, signer: Any, *, ca: bool,
          algorithm: Any = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, algorithm or hashes.SHA256()))


def cert_pem(*certs: x509.Certificate) -> str:
    """Certificates as PEM, separated by a blank line as Alipay's files are."""
    return "\n".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


@dataclass
class AlipayKeys:
    """The app's key pair and Alipay's, with the certificates of certificate mode."""

    app: rsa.RSAPrivateKey
    alipay: rsa.RSAPrivateKey
    root_rsa: x509.Certificate
    root_ec: x509.Certificate
    intermediate: x509.Certificate
    alipay_cert: x509.Certificate
    app_cert: x509.Certificate

    @classmethod
    def make(cls) -> AlipayKeys:
        app = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        alipay = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        mid_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        root = _cert(_name("Ant Financial Certification Authority R1"),
                     _name("Ant Financial Certification Authority R1"), root_key.public_key(), root_key, ca=True)
        root_ec = _cert(_name("Ant Financial Certification Authority E1"),
                        _name("Ant Financial Certification Authority E1"), ec_key.public_key(), ec_key, ca=True)
        mid = _cert(_name("Ant Financial Certification Authority Class 2 R1"), root.subject,
                    mid_key.public_key(), root_key, ca=True)
        leaf = _cert(_name("支付宝(中国)网络技术有限公司-2088000000000001"), mid.subject,
                     alipay.public_key(), mid_key, ca=False)
        app_cert = _cert(_name(f"{APP_ID}"), mid.subject, app.public_key(), mid_key, ca=False)
        return cls(app, alipay, root, root_ec, mid, leaf, app_cert)

    @property
    def alipay_cert_chain_pem(self) -> str:
        return cert_pem(self.alipay_cert, self.intermediate)

    @property
    def root_pem(self) -> str:
        return cert_pem(self.root_ec, self.root_rsa)


def sandbox_config(keys: AlipayKeys, *, cert_mode: bool = False, **overrides: Any) -> AlipaySandboxConfig:
    """The simulator's registration of our test app."""
    from alipay import signing

    settings: dict[str, Any] = dict(app_id=APP_ID, seller_id=SELLER_ID, app_public_key_pem=pem_public(keys.app.public_key()),
                                    alipay_private_key_pem=pem_private(keys.alipay), retry_scale=0.0)
    if cert_mode:
        settings.update(app_cert_sn=signing.cert_sn(keys.app_cert),
                        alipay_root_cert_sn=signing.root_cert_sn([keys.root_ec, keys.root_rsa]),
                        alipay_cert_sn=signing.cert_sn(keys.alipay_cert))
    settings.update(overrides)
    return AlipaySandboxConfig(**settings)


class AlipaySandbox:
    """The simulator on a loopback port (LiveServer from conftest), with its control API."""

    def __init__(self, config: AlipaySandboxConfig, live_server: Any) -> None:
        self.app = create_alipay_sandbox(config)
        self.config = config
        self.server = live_server(self.app)
        self.url = self.server.url
        self.gateway = self.url + "/gateway.do"

    @property
    def state(self) -> Any:
        return self.app.extensions["alipay_sandbox"]

    def control(self, method: str, path: str, payload: Any = None) -> requests.Response:
        return requests.request(method, f"{self.url}/control/{path}", json=payload, timeout=10)

    def stop(self) -> None:
        self.state.stop()
        self.server.stop()


def load_peer() -> ModuleType:
    """python-alipay-sdk, imported under the name ``alipay_peer`` (its own name, ``alipay``, is ours)."""
    if "alipay_peer" in sys.modules:
        return sys.modules["alipay_peer"]
    package = PEER_DIR / "alipay"
    if not (package / "__init__.py").exists():
        raise RuntimeError(f"python-alipay-sdk is not installed in {PEER_DIR}: run `make .venv/.test`")
    spec = importlib.util.spec_from_file_location("alipay_peer", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["alipay_peer"] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def peer_quiet() -> Iterator[None]:
    """python-alipay-sdk reads certificates with pyOpenSSL calls its newer versions deprecate (warnings are errors here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"alipay_peer")
        warnings.filterwarnings("ignore", message=r"X509\.\w+ is deprecated", category=DeprecationWarning)
        yield
