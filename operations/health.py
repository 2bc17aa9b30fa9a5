"""What readiness asks of the database: can it be written, and when did a job last succeed."""

from __future__ import annotations

import datetime as dt

from database import write_transaction
from models import JobRun, OutsideService


def database_writable() -> tuple[bool, str]:
    """Take the write lock and write a row that is rolled back: proves the file is not read-only."""
    try:
        with write_transaction() as txn:
            OutsideService.insert(name="readyz-probe").on_conflict_ignore().execute()
            txn.rollback()
    except Exception as exc:  # any failure means "not ready", with the reason
        return False, f"not writable: {type(exc).__name__}: {exc}"
    return True, "writable"


def last_success(job_name: str) -> dt.datetime | None:
    """When the job named ``job_name`` last finished without error, or None."""
    last = (JobRun.select(JobRun.finished_at).where((JobRun.name == job_name) & (JobRun.ok == True))  # noqa: E712
            .order_by(JobRun.finished_at.desc()).first())
    return None if last is None else last.finished_at
