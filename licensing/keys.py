"""The license signing key: loading it safely, naming it by kid, and the ring of keys we verify with."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

KEY_BITS = 2048
ALGORITHM = "RSA-PKCS1v15-SHA256"

# A key file bigger than this is not a PEM private key; refuse before reading it all.
_MAX_KEY_FILE_BYTES = 64 * 1024

_GENERATE_HINT = (
    "generate one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out {path}` "
    "and `chmod 600 {path}`"
)


class KeyFileError(Exception):
    """A key file named by a setting is missing or unusable; the message says which setting and how to fix it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


def key_id(public_key: RSAPublicKey) -> str:
    """Return a key's kid: the first 16 hex digits of SHA-256 over its DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def public_key_pem(public_key: RSAPublicKey) -> str:
    """Return a public key as SPKI PEM text, the form the extension embeds."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """An RSA-2048 private key that signs licenses, with its public half and kid."""

    kid: str
    private_key: RSAPrivateKey = field(repr=False)
    public_key: RSAPublicKey = field(repr=False)

    def __post_init__(self) -> None:
        # Catch a hand-built SigningKey whose parts disagree before it signs anything.
        if self.private_key.key_size != KEY_BITS:
            raise ValueError(f"license keys are RSA-{KEY_BITS}, not RSA-{self.private_key.key_size}")
        if self.private_key.public_key().public_numbers() != self.public_key.public_numbers():
            raise ValueError("public_key is not the public half of private_key")
        if self.kid != key_id(self.public_key):
            raise ValueError("kid does not match the public key")

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        """Parse an unencrypted PEM RSA-2048 private key (PKCS#8 or PKCS#1); raise ValueError otherwise."""
        return _signing_key_from_pem(pem)

    def public_pem(self) -> str:
        """Return the public half as SPKI PEM text."""
        return public_key_pem(self.public_key)


@functools.lru_cache(maxsize=16)
def _signing_key_from_pem(pem: bytes) -> SigningKey:
    """Parse and validate once per process: validating an RSA key costs tens of milliseconds."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # raised for a password-protected key
        raise ValueError("the private key is encrypted; store it unencrypted with mode 0600") from exc
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"unsupported key type: {exc}") from exc
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"not an RSA private key ({type(key).__name__})")
    if key.key_size != KEY_BITS:
        raise ValueError(f"RSA key is {key.key_size} bits; license keys must be {KEY_BITS} bits")
    public = key.public_key()
    return SigningKey(kid=key_id(public), private_key=key, public_key=public)


def generate_private_key_pem() -> bytes:
    """Make a new RSA-2048 key and return it as unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _read_private_file(path: Path, setting: str) -> bytes:
    """Read a secret file, refusing anything missing, odd, oversized or open to group/others."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyFileError(setting, f"{path} does not exist; " + _GENERATE_HINT.format(path=path)) from None
    except OSError as exc:
        raise KeyFileError(
            setting, f"cannot open {path} ({exc.strerror}); make it readable by the service user"
        ) from None
    try:
        # fstat the open file, not the path, so the checks and the read concern the same file.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(setting, f"{path} is not a regular file; point {setting} at the PEM key file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise KeyFileError(
                setting,
                f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, readable or writable by group/others; "
                f"run `chmod 600 {path}`",
            )
        if info.st_size > _MAX_KEY_FILE_BYTES:
            raise KeyFileError(setting, f"{path} is {info.st_size} bytes, too big for a PEM private key")
        try:
            return os.read(fd, _MAX_KEY_FILE_BYTES + 1)
        except OSError as exc:
            raise KeyFileError(setting, f"cannot read {path} ({exc.strerror})") from None
    finally:
        os.close(fd)


def load_signing_key(path: str | os.PathLike[str], *, setting: str = "LBPAY_LICENSE_KEY_FILE") -> SigningKey:
    """Load the license signing key from a 0600 PEM file, raising KeyFileError that names ``setting``."""
    path = Path(path)
    pem = _read_private_file(path, setting)
    try:
        return SigningKey.from_pem(pem)
    except ValueError as exc:
        raise KeyFileError(
            setting, f"{path} is not a usable RSA-2048 private key PEM ({exc}); " + _GENERATE_HINT.format(path=path)
        ) from None


def write_private_key(path: str | os.PathLike[str], pem: bytes) -> None:
    """Create ``path`` with mode 0600 holding ``pem``; raise FileExistsError rather than overwrite."""
    SigningKey.from_pem(pem)  # never write something the service would then refuse to load
    # O_EXCL makes creation atomic and refuses an existing file or symlink; the mode is set at creation,
    # so the key is never readable by others, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away; we want exactly 0600
        view = memoryview(pem)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def load_public_key_pem(pem: bytes) -> RSAPublicKey:
    """Parse an SPKI PEM RSA public key; raise ValueError otherwise."""
    try:
        key = serialization.load_pem_public_key(pem)
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"unsupported key type: {exc}") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"not an RSA public key ({type(key).__name__})")
    return key


class KeyRing:
    """The active signing key plus the public keys of retired ones that licenses in the field may still carry."""

    def __init__(self, active: SigningKey, others: Iterable[RSAPublicKey | SigningKey] = ()) -> None:
        self.active = active
        self._keys: dict[str, RSAPublicKey] = {active.kid: active.public_key}
        for other in others:
            public = other.public_key if isinstance(other, SigningKey) else other
            self._keys.setdefault(key_id(public), public)

    @classmethod
    def from_directory(
        cls,
        active_path: str | os.PathLike[str],
        directory: str | os.PathLike[str] | None = None,
        *,
        setting: str = "LBPAY_LICENSE_KEY_FILE",
        directory_setting: str = "LBPAY_LICENSE_OLD_KEYS_DIR",
    ) -> KeyRing:
        """Load the active key from ``active_path`` and every ``*.pem`` public key in ``directory`` as retired."""
        active = load_signing_key(active_path, setting=setting)
        if directory is None:
            return cls(active)
        folder = Path(directory)
        if not folder.is_dir():
            raise KeyFileError(directory_setting, f"{folder} is not a directory of retired public keys (*.pem)")
        others: list[RSAPublicKey] = []
        for pem_path in sorted(folder.glob("*.pem")):
            try:
                pem = pem_path.read_bytes()
            except OSError as exc:
                raise KeyFileError(directory_setting, f"cannot read {pem_path} ({exc.strerror})") from None
            if b"PRIVATE KEY" in pem:
                raise KeyFileError(
                    directory_setting,
                    f"{pem_path} holds a private key; keep only the public half of a retired key "
                    f"(`openssl pkey -in old.pem -pubout -out {pem_path}`)",
                )
            try:
                others.append(load_public_key_pem(pem))
            except ValueError as exc:
                raise KeyFileError(directory_setting, f"{pem_path} is not an RSA public key PEM ({exc})") from None
        return cls(active, others)

    def public_keys(self) -> dict[str, RSAPublicKey]:
        """Return kid → public key for every key a license may be verified with, active first."""
        return dict(self._keys)

    def describe(self) -> list[dict[str, object]]:
        """Describe each key for publication (kid, algorithm, PEM, whether it signs new licenses), active first."""
        return [
            {
                "kid": kid,
                "algorithm": ALGORITHM,
                "public_key_pem": public_key_pem(public),
                "active": kid == self.active.kid,
            }
            for kid, public in self._keys.items()
        ]


EXTENSION_KEYS_FOLDER = "licence-keys"  # the extension's spelling of the folder it loads its key from


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def export_public_keys(ring: KeyRing, directory: str | os.PathLike[str]) -> list[Path]:
    """Write what the extension ships: ``licence-keys/public-key.txt`` (the active key) and ``keyring.json`` (all)."""
    folder = Path(directory) / EXTENSION_KEYS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    keyring = {"keys": [{"kid": key["kid"], "pem": key["public_key_pem"], "active": key["active"]}
                        for key in ring.describe()]}
    written = [folder / "public-key.txt", folder / "keyring.json"]
    _write_atomically(written[0], ring.active.public_pem())
    _write_atomically(written[1], json.dumps(keyring, indent=2) + "\n")
    return written
