"""The WAL is copied back into the database file every CHECKPOINT_EVERY write transactions, in a thread of
its own: the request whose commit made the checkpoint due does not wait for it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import database
import models
from database import CHECKPOINT_EVERY, write_transaction


def test_a_due_checkpoint_runs_beside_the_writer_and_copies_the_log_into_the_file(app: Any, monkeypatch: Any) -> None:
    ran: list[str] = []
    copied_all = threading.Event()
    copy = database._checkpoint

    def spy(db: Any) -> None:  # records who ran it, then runs it: nothing replaced
        ran.append(threading.current_thread().name)
        copy(db)
        copied_all.set()

    monkeypatch.setattr(database, "_checkpoint", spy)
    path = Path(models.db.obj.database)
    with app.app_context(), models.db.connection_context():
        with write_transaction():
            models.db.execute_sql("CREATE TABLE IF NOT EXISTS spare (n INTEGER)")
        for n in range(CHECKPOINT_EVERY):
            with write_transaction():
                models.db.execute_sql("INSERT INTO spare (n) VALUES (?)", (n,))
    assert copied_all.wait(10)
    assert threading.current_thread().name not in ran
    assert set(ran) == {"wal-checkpoint"}
    # The database file itself, its log ignored, holds what was committed before the checkpoint (read
    # once the copy is over: a file read while pages are still being copied in is not yet consistent).
    raw = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        copied = raw.execute("SELECT count(*) FROM spare").fetchone()[0]
    finally:
        raw.close()
    assert copied >= 1
