"""A throw-away deployment for the benchmark: keys, a TLS certificate and the settings of each server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

UTC = dt.timezone.utc
MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
PUBLIC_KEY_ID = "PUB_KEY_ID_0112300001092026112600000000000042"
MERCHANT_SERIAL = "3775B6A45ACD588826D15E583A95F5DD99311C6B"
SHOP_ORIGIN = "https://shop.bench"
APIV3_KEY = b"k3yOfThirtyTwoBytesForBench00001"


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _secret(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


def _tls_certificate(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "tls_cert.pem", folder / "tls_key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _secret(key_file, _private_pem(key))
    return cert_file, key_file


class Workspace:
    """Keys and settings under one folder, made once and read back by every bench process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def make(cls, folder: Path) -> "Workspace":
        folder.mkdir(parents=True, exist_ok=True)
        make = lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)  # noqa: E731
        merchant, platform, license_key = make(), make(), make()
        cert_file, key_file = _tls_certificate(folder)
        files = {
            "merchant_key": _secret(folder / "apiclient_key.pem", _private_pem(merchant)),
            "merchant_public": str(folder / "apiclient_pub.pem"),
            "platform_key": _secret(folder / "platform_key.pem", _private_pem(platform)),
            "platform_public": str(folder / "wechatpay_pub.pem"),
            "license_key": _secret(folder / "license_key.pem", _private_pem(license_key)),
            "tls_cert": str(cert_file), "tls_key": str(key_file),
        }
        Path(files["merchant_public"]).write_bytes(_public_pem(merchant.public_key()))
        Path(files["platform_public"]).write_bytes(_public_pem(platform.public_key()))
        (folder / "workspace.json").write_text(json.dumps(files, indent=2))
        return cls(folder)

    @property
    def files(self) -> dict[str, str]:
        return json.loads((self.folder / "workspace.json").read_text())

    def shop_settings(self, database: Path, sandbox_url: str, **overrides: str) -> dict[str, str]:
        """The LBPAY_* environment of our app in live mode against the sandbox, as a deployment sets it."""
        f = self.files
        settings = {
            "LBPAY_WECHATPAY_MODE": "live",
            "LBPAY_INSTANCE_PATH": str(self.folder / "instance"),
            "LBPAY_DATABASE_URL": f"sqlite:///{database}",
            "LBPAY_SECRET_KEY": "bench-secret-" + uuid.uuid4().hex,
            "LBPAY_PUBLIC_BASE_URL": SHOP_ORIGIN,
            "LBPAY_WECHATPAY_API_BASE": sandbox_url,
            "LBPAY_WECHATPAY_MCHID": MCHID,
            "LBPAY_WECHATPAY_APPID": APPID,
            "LBPAY_WECHATPAY_MERCHANT_KEY_FILE": f["merchant_key"],
            "LBPAY_WECHATPAY_MERCHANT_SERIAL": MERCHANT_SERIAL,
            "LBPAY_WECHATPAY_APIV3_KEY": APIV3_KEY.decode(),
            "LBPAY_WECHATPAY_PUBLIC_KEY_FILE": f["platform_public"],
            "LBPAY_WECHATPAY_PUBLIC_KEY_ID": PUBLIC_KEY_ID,
            "LBPAY_LICENSE_KEY_FILE": f["license_key"],
            # WeChat's client trusts the sandbox's self-signed certificate, as a proxy's CA would be trusted.
            "REQUESTS_CA_BUNDLE": f["tls_cert"],
            "NO_PROXY": "127.0.0.1,localhost",
        }
        settings.update(overrides)
        return settings

    def sandbox_config(self, shop_url: str) -> Any:
        """The simulator's registration of our merchant, delivering notifications to ``shop_url``."""
        from wechatpay.sandbox import SandboxConfig

        f = self.files
        return SandboxConfig(
            mchid=MCHID, appid=APPID, merchant_public_key_pem=Path(f["merchant_public"]).read_bytes(),
            merchant_serial=MERCHANT_SERIAL, apiv3_key=APIV3_KEY,
            platform_private_key_pem=Path(f["platform_key"]).read_bytes(), public_key_id=PUBLIC_KEY_ID,
            notify_origin_map={SHOP_ORIGIN: shop_url}, retry_scale=0.01)
