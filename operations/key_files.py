"""Where license signing keys live and how a new one takes over without stranding a learner.

Layout of the keys folder (``LBPAY_LICENSE_KEYS_DIR``, default ``<instance>/license-keys``, on the volume):

- ``active.pem``: the private key that signs new licenses once a rotation has happened (mode 0600);
- ``retired/<kid>.pem``: the public half of every key that signed before, so old licenses still verify.

Before the first rotation the signer is ``LBPAY_LICENSE_KEY_FILE`` (a mounted secret); afterwards its
public half stays in the ring. Private keys are files, never database rows.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from licensing import KeyRing, SigningKey, generate_private_key_pem, load_signing_key, public_key_pem, write_private_key

from billing import audit
from database import write_transaction

ACTIVE = "active.pem"
RETIRED = "retired"
SETTING = "LBPAY_LICENSE_KEYS_DIR"


def load_key_ring(key_file: str | None, keys_dir: Path) -> KeyRing:
    """Load the signer (the folder's ``active.pem``, else ``key_file``) and every key that signed before."""
    active_path = keys_dir / ACTIVE
    signer_path: str | Path | None = active_path if active_path.exists() else key_file
    if signer_path is None:
        raise FileNotFoundError("no license signing key: set LBPAY_LICENSE_KEY_FILE or run `lbpay keys rotate`")
    setting = SETTING if signer_path == active_path else "LBPAY_LICENSE_KEY_FILE"
    retired = keys_dir / RETIRED
    ring = KeyRing.from_directory(signer_path, retired if retired.is_dir() else None, setting=setting,
                                  directory_setting=SETTING)
    others: list[RSAPublicKey] = [k for kid, k in ring.public_keys().items() if kid != ring.active.kid]
    if key_file is not None and signer_path != key_file:
        # The first key, still mounted as a secret: its licenses must keep verifying.
        others.append(load_signing_key(key_file).public_key)
    return KeyRing(ring.active, others)


def _write_public(folder: Path, kid: str, public: RSAPublicKey) -> None:
    path = folder / f"{kid}.pem"
    if not path.exists():
        temporary = folder / f".{kid}.pem.tmp"
        temporary.write_text(public_key_pem(public))
        os.replace(temporary, path)


def rotate(keys_dir: Path, current: KeyRing, *, now: dt.datetime, actor: str = "cli") -> SigningKey:
    """Make a new signing key active; the keys that signed before stay as public keys only."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    retired = keys_dir / RETIRED
    retired.mkdir(mode=0o755, exist_ok=True)
    for kid, public in current.public_keys().items():
        _write_public(retired, kid, public)
    pem = generate_private_key_pem()
    new = SigningKey.from_pem(pem)
    staged = keys_dir / f".next-{new.kid}.pem"
    write_private_key(staged, pem)
    try:
        with write_transaction():
            audit.record("license_key.rotated", at=now, actor=actor,
                         detail={"kid": new.kid, "previous_kid": current.active.kid})
            # Atomic: a process that starts now loads either the old signer or the new one, never neither.
            os.replace(staged, keys_dir / ACTIVE)
            _fsync_dir(keys_dir)
    finally:
        staged.unlink(missing_ok=True)
    return new


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
