"""The database: opening it, the queue its writers wait in, ``write_transaction``, and crash points.

``open_database`` hangs a ``WriterQueue`` on each SQLite database it opens (``database.writers``),
so two apps in one process never share one; ``write_transaction`` uses the queue of the database
that ``models.db`` points at.

Crash points are for the crash-safety tests: set ``LBPAY_CRASH_AT=step:/path/marker[,...]`` and the
first time a process reaches ``step`` it creates the marker file and kills itself, as a power cut or
OOM kill would. With the variable unset (every real deployment) ``crash_point`` does nothing; it is
read from the environment here, not from settings, because it is a test harness, never a setting.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import itertools
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

from peewee import Database, OperationalError, PostgresqlDatabase, SqliteDatabase, _transaction

from models import db
from settings import ConfigError, Problem

log = logging.getLogger(__name__)


def open_database(url: str, instance_path: str, busy_timeout_ms: int = 10000) -> Database:
    """Open the database named by a URL: ``sqlite:///file`` (WAL) or ``postgresql://``."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path != ":memory:" and not os.path.isabs(path):
            path = os.path.join(instance_path, path)
        # No automatic checkpoints: SQLite would run one (and its fsyncs) in whichever commit filled
        # the log, while that writer still holds everyone's turn; write_transaction runs them after it.
        return QueuedSqliteDatabase(path, timeout=busy_timeout_ms / 1000, pragmas={
            "journal_mode": "wal", "foreign_keys": 1, "busy_timeout": busy_timeout_ms, "synchronous": "normal",
            "wal_autocheckpoint": 0})
    if url.startswith(("postgresql://", "postgres://")):
        from playhouse.db_url import parse

        # The same patience as SQLite's busy timeout: a writer waiting longer for the write lock (or
        # any lock) gives up with "lock timeout", a 503 to retry, instead of hanging every request.
        settings = parse(url)
        settings["options"] = f"{settings.get('options', '')} -c lock_timeout={int(busy_timeout_ms)}".strip()
        return CurrentSchemaPostgresqlDatabase(**settings)
    raise ConfigError([Problem("LBPAY_DATABASE_URL", "must start with sqlite:/// or postgresql://", url)])


class CurrentSchemaPostgresqlDatabase(PostgresqlDatabase):
    """PostgreSQL whose catalogue look-ups (tables, columns, indexes) read the schema it works in.

    peewee looks in "public" unless told otherwise, while every statement goes to the first schema
    of the connection's search_path: a database kept in a schema of its own (a shared server, each
    test of `make test-postgres`) looked empty to the migrations, which then applied everything again.
    """

    def _schema(self, schema: str | None) -> str:
        return schema or str(self.execute_sql("SELECT current_schema()").fetchone()[0])

    def get_tables(self, schema: str | None = None) -> Any:
        return super().get_tables(self._schema(schema))

    def get_views(self, schema: str | None = None) -> Any:
        return super().get_views(self._schema(schema))

    def get_indexes(self, table: str, schema: str | None = None) -> Any:
        return super().get_indexes(table, self._schema(schema))

    def get_columns(self, table: str, schema: str | None = None) -> Any:
        return super().get_columns(table, self._schema(schema))

    def get_primary_keys(self, table: str, schema: str | None = None) -> Any:
        return super().get_primary_keys(table, self._schema(schema))

    def get_foreign_keys(self, table: str, schema: str | None = None) -> Any:
        return super().get_foreign_keys(table, self._schema(schema))


# Write transactions of one process between two WAL checkpoints (a payment is 10-15 pages, so
# the log stays near SQLite's default of 1,000 pages).
CHECKPOINT_EVERY = 100


def make_private(path: str) -> None:
    """Create the database file readable by its owner only (SQLite gives its -wal and -shm the same mode).

    It holds buyers' e-mail addresses, tokens' hashes and the audit trail; an existing file that
    others could read is narrowed to 0600 too. An existing file is never opened here: closing any
    descriptor of a SQLite file drops every lock this process's connections hold on it.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    for name in (path, path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)


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
        self._commits = itertools.count(1)  # next() on it is atomic under the GIL: no lock to wait for

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

    def holding(self) -> bool:
        """Whether this thread already holds the turn (so a transaction now is a nested one)."""
        return bool(getattr(self._local, "depth", 0))

    def checkpoint_due(self) -> bool:
        """Count one finished write transaction; true every ``CHECKPOINT_EVERY``-th in this process."""
        return next(self._commits) % CHECKPOINT_EVERY == 0

    @staticmethod
    def _take_file(fd: int, deadline: float) -> bool:
        # Polled, since flock has no timeout. The turn is held for well under a millisecond, so
        # the pause stays short: a waiter asleep for 2 ms after the holder let go kept this
        # process's whole group (and its learners' answers) idle for that long.
        pause = 0.00005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.0005)


def write_transaction() -> Any:
    """Open a write transaction that takes the database's write lock up front (reads then writes).

    SQLite: the writer queue, then ``BEGIN IMMEDIATE``. PostgreSQL: a transaction-scoped advisory
    lock, so writers queue exactly as on SQLite and the audit chain's read-last-hash-then-append
    cannot fork.
    """
    if isinstance(db.obj, SqliteDatabase):
        return _sqlite_transaction(db.obj)
    return _serialised_transaction()


@contextlib.contextmanager
def read_snapshot() -> Iterator[None]:
    """Read several tables as of one moment, so a page never shows half of a write.

    Without it each SELECT sees the latest commit: an order read before a refund settles and its
    refunds read after show a refund SUCCESS beside an order still fulfilled. SQLite: a deferred
    transaction (WAL keeps its snapshot from the first read). PostgreSQL: REPEATABLE READ, READ ONLY.
    Inside a write transaction it adds nothing: that one already sees a single state.
    """
    if db.in_transaction():
        yield
        return
    with db.atomic():
        if not isinstance(db.obj, SqliteDatabase):
            db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


@contextlib.contextmanager
def _sqlite_transaction(database: SqliteDatabase) -> Iterator[_transaction]:
    writers = database.writers if isinstance(database, QueuedSqliteDatabase) else _DEFAULT_WRITERS
    outermost = not writers.holding()
    with writers.turn(database.database), db.atomic("IMMEDIATE") as txn:
        yield txn
    if outermost and isinstance(database, QueuedSqliteDatabase) and writers.checkpoint_due():
        database.checkpoints.start(database)


class Checkpoints:
    """Copies the WAL back into the database file in a thread of its own, one checkpoint at a time.

    A checkpoint writes pages and syncs the file: milliseconds, which the request whose commit made
    it due used to wait for (the slowest one or two of 200 new orders in `make bench`). What that
    request committed is in the WAL already; the copy is housekeeping that keeps the log short.
    """

    def __init__(self) -> None:
        self._running = threading.Lock()

    def start(self, database: SqliteDatabase) -> None:
        if not self._running.acquire(blocking=False):
            return  # one is under way; it copies what this commit added too, or the next one will

        def run() -> None:
            try:
                with database.connection_context():  # this thread's own connection, closed after
                    _checkpoint(database)
            finally:
                self._running.release()

        threading.Thread(target=run, name="wal-checkpoint", daemon=True).start()


def _checkpoint(database: SqliteDatabase) -> None:
    """Copy the WAL back into the database file, outside the writer turn: writers go on meanwhile."""
    try:
        database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
    except OperationalError as exc:  # committed already: a checkpoint left for the next time is no failure
        log.warning("WAL checkpoint skipped: %s", exc)


@contextlib.contextmanager
def _serialised_transaction() -> Iterator[_transaction]:
    with db.atomic() as txn:
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
        yield txn


T = TypeVar("T")


class _Piece:
    """One thread's write work waiting for a group, and what came of it."""

    __slots__ = ("work", "context", "done", "lead", "result", "error")

    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work
        self.context = contextvars.copy_context()  # its request id, for the log lines the work writes
        self.done = threading.Event()
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None

    def answer(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class WriteGroups:
    """Group commit: the write work of several threads of a process in one write transaction, one commit.

    A thread hands its work over and waits. The thread that finds no group running leads: it takes
    every piece waiting (up to ``limit``), runs them one after another inside one
    ``write_transaction``, commits, and only then answers them all, so nothing is answered before
    it is committed. A piece that raises gets its own exception and changes nothing (the others
    run again without it); if the commit fails, every piece of the group gets that failure. The
    leader then hands the lead to the oldest thread still waiting, and returns its own answer.
    """

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self.groups = 0  # groups committed (or failed) by this process: what the tests count
        self._lock = threading.Lock()
        self._queue: list[_Piece] = []
        self._running = False

    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    def run(self, work: Callable[[], T]) -> T:
        if db.in_transaction():  # inside someone's transaction already: a savepoint of it, no group
            with db.atomic():
                return work()
        me = _Piece(work)
        with self._lock:
            self._queue.append(me)
            lead = not self._running
            self._running = True
        if not lead:
            me.done.wait()
            if not me.lead:
                return me.answer()  # type: ignore[no-any-return]
        self._lead()
        return me.answer()  # type: ignore[no-any-return]

    def _lead(self) -> None:
        with self._lock:
            group, self._queue = self._queue[:self.limit], self._queue[self.limit:]
            self.groups += 1
        try:
            self._commit(group)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True  # it stays queued: its own group will hold it
                    self._queue[0].done.set()
                else:
                    self._running = False
            for piece in group:
                piece.done.set()

    @classmethod
    def _commit(cls, group: list[_Piece]) -> None:
        # No savepoint per piece: SQLite copies every page a savepoint touches into its statement
        # journal (measured: +72 KiB written per notification). Failures are rare, so the group is
        # optimistic: if a piece raises, everything rolls back and runs again without it, and the
        # failing piece runs alone to get its own answer. Work must therefore be re-runnable
        # (database effects only), as every transaction body already is.
        failed: list[_Piece] = []
        try:
            with write_transaction():
                for piece in group:
                    try:
                        piece.result = piece.context.run(piece.work)
                    except Exception:
                        failed.append(piece)
                        raise
        except BaseException as exc:
            if failed and len(group) > 1:
                cls._commit([p for p in group if p is not failed[0]])
                cls._commit(failed)
                return
            for piece in group:  # alone, or the transaction itself failed: nothing of it stands
                piece.result, piece.error = None, exc
            if not isinstance(exc, Exception):
                raise


def grouped_write(work: Callable[[], T]) -> T:
    """Run ``work`` in a write transaction shared with other threads' waiting work (group commit).

    ``work`` runs on whichever thread leads the group, and may run twice (again after a rollback
    when another piece of its group failed): it must change nothing but the database and touch no
    thread-local state but the database's. Returns (or raises) only after the group committed.
    """
    groups = getattr(db.obj, "groups", None) or _DEFAULT_GROUPS
    return groups.run(work)


class QueuedSqliteDatabase(SqliteDatabase):
    """A SQLite database with its own writer queue, patient as long as SQLite's busy timeout."""

    def __init__(self, database: str, **kwargs: Any) -> None:
        super().__init__(database, **kwargs)
        self.writers = WriterQueue(patience=float(kwargs.get("timeout", 10.0)))
        self.groups = WriteGroups()
        self.checkpoints = Checkpoints()
        self.private = False

    def _connect(self) -> Any:
        # The file comes into being (or is narrowed) private before SQLite first opens it, and only
        # when someone connects: a command that never touches the database leaves no empty file.
        if not self.private and self.database != ":memory:":
            make_private(self.database)
            self.private = True
        return super()._connect()


_DEFAULT_WRITERS = WriterQueue()  # for a database opened without open_database (a test's own file)
_DEFAULT_GROUPS = WriteGroups()  # PostgreSQL's, and a database opened without open_database


_PLAN: dict[str, str] = {}
for item in filter(None, os.environ.get("LBPAY_CRASH_AT", "").split(",")):
    step, _, marker = item.partition(":")
    _PLAN[step.strip()] = marker.strip()


def crash_point(step: str) -> None:
    """Die here, once, if the crash-safety tests asked for it."""
    marker = _PLAN.get(step)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
