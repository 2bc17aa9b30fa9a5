"""Consistent copies of the live SQLite database, taken while it takes payments, and putting one back."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peewee import SqliteDatabase

from models import db

from billing.shop import Shop

from .alerts import raise_alert

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
# A file missing any of these is not a backup of this service.
REQUIRED_TABLES = frozenset({"course", "order", "license", "notification", "audit_event"})


class BackupError(Exception):
    """A backup could not be made, or a file is not one we would restore."""


def database_file() -> Path:
    """Return the path of the live SQLite database; raise BackupError on another database."""
    database = db.obj
    if not isinstance(database, SqliteDatabase) or database.database in ("", ":memory:"):
        raise BackupError("backups copy a SQLite file; on PostgreSQL use pg_dump or your provider's backups")
    return Path(database.database)


def _check(path: Path) -> dict[str, Any]:
    """Open a database file read-only and prove it whole: integrity, foreign keys and our tables."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path} cannot be opened: {exc}") from None
    try:
        try:
            result = [row[0] for row in connection.execute("PRAGMA integrity_check")]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            broken_keys = connection.execute("PRAGMA foreign_key_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{path} is not a SQLite database: {exc}") from None
        if result != ["ok"]:
            raise BackupError(f"{path} fails the integrity check: {'; '.join(result[:3])}")
        missing = REQUIRED_TABLES - tables
        if missing:
            raise BackupError(f"{path} is not a Learning Buddy Pay database (no {', '.join(sorted(missing))})")
        if broken_keys:
            raise BackupError(f"{path} has {len(broken_keys)} rows pointing at rows that do not exist")
        orders = connection.execute('SELECT COUNT(*) FROM "order"').fetchone()[0]
        version = 0
        if "schema_version" in tables:
            row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] or 0
        return {"orders": orders, "schema_version": version}
    finally:
        connection.close()


# Objects SQLite makes by itself (statistics, AUTOINCREMENT counters, UNIQUE and PRIMARY KEY indexes),
# and the two small tables Litestream keeps in a database it replicates (its lock and its sequence).
_SQLITE_OWN = ("sqlite_", "_litestream_")


def schema_of(connection: sqlite3.Connection) -> dict[tuple[str, str], set[str]]:
    """Every schema object of a database as (type, name), with its columns for tables."""
    objects: dict[tuple[str, str], set[str]] = {}
    for kind, name in connection.execute("SELECT type, name FROM sqlite_master").fetchall():
        columns: set[str] = set()
        if kind == "table":
            columns = {row[1] for row in connection.execute(f'PRAGMA table_xinfo("{name.replace(chr(34), "")}")')}
        objects[(kind, name)] = columns
    return objects


def our_schema() -> dict[tuple[str, str], set[str]]:
    """The schema our migrations build today, made in a private in-memory database.

    Restore runs from the command line with the server stopped, so pointing the model handle
    at a scratch database for a moment disturbs nobody; it is pointed back whatever happens.
    """
    import migrations

    live = db.obj
    scratch = SqliteDatabase(":memory:")
    db.initialize(scratch)
    try:
        migrations.migrate()
        return schema_of(scratch.connection())
    finally:
        scratch.close()
        db.initialize(live)


def unknown_schema(theirs: dict[tuple[str, str], set[str]], ours: dict[tuple[str, str], set[str]]) -> list[str]:
    """What a backup has that our schema has not: a trigger, view, table, index or column.

    An older backup may lack what later migrations add (``lbpay init`` adds it after the
    restore); it may never carry more, least of all a trigger that would run on our writes.
    """
    strange = []
    for (kind, name), columns in sorted(theirs.items()):
        if name.startswith(_SQLITE_OWN) and kind in ("table", "index"):
            continue
        if (kind, name) not in ours:
            strange.append(f"{kind} {name}")
        elif columns - ours[(kind, name)]:
            strange.append(f"{kind} {name} columns {', '.join(sorted(columns - ours[(kind, name)]))}")
    return strange


def _copy(source: sqlite3.Connection, target: sqlite3.Connection) -> None:
    # One step: in WAL mode it holds only a read snapshot, so writers carry on; a stepped copy
    # would restart whenever a writer commits and might never finish under load.
    source.backup(target, pages=-1)


def make_backup(dest: Path, *, source: Path | None = None) -> dict[str, Any]:
    """Copy the live database to ``dest`` as one plain SQLite file (no WAL), checked, then renamed into place."""
    source = source or database_file()
    dest = Path(dest)
    if dest.exists():
        raise BackupError(f"{dest} exists; a backup never overwrites a file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    live = sqlite3.connect(str(source), timeout=30)
    try:
        copy = sqlite3.connect(str(partial))
        try:
            # The online backup API copies one committed state of the database, whatever
            # the server writes meanwhile.
            _copy(live, copy)
            copy.execute("PRAGMA journal_mode=DELETE")
            copy.commit()
        finally:
            copy.close()
    finally:
        live.close()
    try:
        facts = _check(partial)
        os.chmod(partial, 0o600)  # a backup holds everything the database does
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    facts.update(path=str(dest), bytes=dest.stat().st_size)
    log.info("backup written to %s (%s orders)", dest, facts["orders"])
    return facts


def check_backup(src: Path) -> dict[str, Any]:
    """Return what a backup holds after proving it whole; raise BackupError when it is not."""
    src = Path(src)
    if not src.is_file():
        raise BackupError(f"{src} is not a file")
    with open(src, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise BackupError(f"{src} is not a SQLite database")
    facts = _check(src)
    # Only here, on the way in (never for the backups we take): the scratch schema is built in
    # this process, which must not be serving requests meanwhile.
    connection = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        strange = unknown_schema(schema_of(connection), our_schema())
    finally:
        connection.close()
    if strange:
        raise BackupError(f"{src} has schema objects our migrations never made: {'; '.join(strange[:5])}")
    return facts


def restore_backup(src: Path, *, target: Path | None = None, now: dt.datetime) -> dict[str, Any]:
    """Put a checked backup in place of the live database, keeping the replaced one beside it."""
    facts = check_backup(src)
    target = target or database_file()
    kept = None
    if target.exists():
        kept = target.with_name(f"{target.name}.before-restore-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}")
        make_backup(kept, source=target)
    backup = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        live = sqlite3.connect(str(target), timeout=30)
        try:
            # Copying into the live file through SQLite (not over it) keeps its WAL consistent
            # for any connection that is still open.
            backup.backup(live)
        finally:
            live.close()
    finally:
        backup.close()
    facts.update(restored_to=str(target), previous_kept_at=str(kept) if kept else None)
    log.warning("database restored from %s (%s orders)", src, facts["orders"])
    return facts


def backup_folder(directory: Path | None) -> Path:
    """Return where scheduled backups go: ``directory``, or a ``backups`` folder beside the database."""
    return directory or database_file().parent / "backups"


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` scheduled backups in ``folder``; return what went."""
    backups = sorted(folder.glob("lbpay-*.sqlite3"))
    doomed = backups[:-keep] if keep > 0 else backups
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def latest_backup(folder: Path) -> Path | None:
    backups = sorted(folder.glob("lbpay-*.sqlite3"))
    return backups[-1] if backups else None


def daily_backup(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Once a day, copy the database into the backups folder and keep the newest few."""
    try:
        database_file()
    except BackupError:
        return {}  # PostgreSQL: the provider's backups apply
    folder = backup_folder(shop.config.backup_dir)
    last = latest_backup(folder)
    if last is not None and now - dt.datetime.fromtimestamp(last.stat().st_mtime, UTC) < dt.timedelta(hours=23):
        return {}
    try:
        facts = make_backup(folder / f"lbpay-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.sqlite3")
    except Exception as exc:
        raise_alert("backup_failed", f"The daily backup failed: {exc}", now=now, to=shop.config.alert_email,
                    key=f"backup_failed:{now:%Y%m%d}")
        raise
    removed = prune(folder, shop.config.backup_keep)
    return {"backed_up": 1, "orders": facts["orders"], "pruned": len(removed)}
