"""What the business rules need from the outside world, gathered in one object."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import os
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

from peewee import SqliteDatabase, _transaction

from licensing import KeyRing
from models import db

UTC = dt.timezone.utc
# A one-time course is bought for good, but the extension needs an expiry: a century.
LIFETIME = dt.timedelta(days=36500)


class WeChatPayApi(Protocol):
    """The calls billing makes to WeChat Pay (``wechatpay.client.WeChatPayClient``)."""

    def create_native_order(self, *, out_trade_no: str, description: str, amount_fen: int,
                            notify_url: str, time_expire: dt.datetime,
                            attach: str | None = None) -> str: ...

    def query_by_out_trade_no(self, out_trade_no: str, *, attempts: int | None = None) -> dict[str, Any]: ...

    def close_order(self, out_trade_no: str) -> None: ...


@dataclass
class Shop:
    """The merchant's identity, keys and clients that every billing function works with."""

    wechat: WeChatPayApi
    verifier: Any
    apiv3_keys: Sequence[bytes]
    mchid: str
    appid: str
    license_keys: KeyRing
    notify_url: str
    order_ttl: dt.timedelta = dt.timedelta(minutes=30)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(UTC))
    poll_after_ms: int = 500
    token_secret: bytes = b""
    mailer: Any = None  # billing.mail.Mailer: SMTP server, sender, link base (None: mail stays queued)

    def __post_init__(self) -> None:
        if len(self.token_secret) < 16:
            raise ValueError("token_secret must be at least 16 bytes")

    def derive_token(self, purpose: str, public_id: str) -> str:
        """Derive a bearer token from a row's random public id and the server secret.

        Deriving (rather than storing) lets an idempotent retry be answered with the same
        token; only its hash is stored, so the database alone never yields a token.
        """
        mac = hmac.new(self.token_secret, f"{purpose}:{public_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def now(self) -> dt.datetime:
        """Return the current time as an aware UTC datetime."""
        return self.clock().astimezone(UTC)


# Any constant: the key of the PostgreSQL advisory lock that serialises our write transactions.
WRITE_LOCK_KEY = 0x4C425041  # "LBPA"


class WriterQueue:
    """Lines up this machine's SQLite writers (threads and processes) before they ask SQLite.

    A writer that finds SQLite's lock taken sleeps in SQLite's busy handler in growing steps (up
    to 100 ms), which is where long tails under load come from. Waiting here instead, on a thread
    lock and an ``flock`` on a file beside the database, wakes the next writer as soon as the
    lock is free. After ``patience`` seconds a writer goes on to SQLite anyway, whose busy timeout
    then decides (a 503 that WeChat retries), so a stuck holder can never hang everyone.
    """

    def __init__(self, patience: float = 10.0) -> None:
        self.patience = patience
        self._thread_lock = threading.Lock()
        self._local = threading.local()
        self._fd: int | None = None
        self._fd_key: tuple[int, str] | None = None

    def _lock_file(self, database: str) -> int:
        key = (os.getpid(), database)  # a forked worker opens its own descriptor
        if self._fd is None or self._fd_key != key:
            self._fd = os.open(database + "-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._fd_key = key
        return self._fd

    @contextlib.contextmanager
    def turn(self, database: str) -> Iterator[None]:
        """Hold this machine's writer turn for the block (re-entrant within a thread)."""
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        deadline = time.monotonic() + self.patience
        have_thread = self._thread_lock.acquire(timeout=self.patience)
        fd = self._lock_file(database) if have_thread and database != ":memory:" else None
        have_file = fd is not None and self._take_file(fd, deadline)
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            if have_file:
                fcntl.flock(fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
            if have_thread:
                self._thread_lock.release()

    @staticmethod
    def _take_file(fd: int, deadline: float) -> bool:
        pause = 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.002)


WRITERS = WriterQueue()


def write_transaction() -> Any:
    """Open a write transaction that takes the database's write lock up front (reads then writes).

    SQLite: the writer queue, then ``BEGIN IMMEDIATE``. PostgreSQL: a transaction-scoped advisory
    lock, so writers queue exactly as on SQLite and the audit chain's read-last-hash-then-append
    cannot fork.
    """
    if isinstance(db.obj, SqliteDatabase):
        return _sqlite_transaction(db.obj.database)
    return _serialised_transaction()


@contextlib.contextmanager
def _sqlite_transaction(database: str) -> Iterator[_transaction]:
    with WRITERS.turn(database), db.atomic("IMMEDIATE") as txn:
        yield txn


@contextlib.contextmanager
def _serialised_transaction() -> Iterator[_transaction]:
    with db.atomic() as txn:
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
        yield txn


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a secret token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare a presented token with a stored hash in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash)


_OUT_TRADE_NO_ALPHABET = string.ascii_uppercase + string.digits


def new_out_trade_no(now: dt.datetime) -> str:
    """Return a fresh merchant order number: 28 characters, time-prefixed for humans."""
    suffix = "".join(secrets.choice(_OUT_TRADE_NO_ALPHABET) for _ in range(12))
    return "LB" + now.astimezone(UTC).strftime("%Y%m%d%H%M%S") + suffix


def iso_utc(value: dt.datetime | None) -> str | None:
    """Format an aware datetime for the API: RFC 3339 in UTC with a ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
