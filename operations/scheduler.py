"""Scheduled jobs that run once at a time however many processes run them (a lease in the database)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from typing import Any

from peewee import IntegrityError

from billing.shop import Shop
from database import write_transaction
from models import JobRun, Lease, db

from .jobs import Job, job_table
from .metrics import flush_calls

log = logging.getLogger(__name__)
CALL_TALLY_SECONDS = 5


def holder_id() -> str:
    """Name this process (and thread-safe instance) in leases and job runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def acquire_lease(name: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
    """Take the lease unless another holder has an unexpired one (compare-and-set)."""
    with write_transaction():
        taken = (Lease.update(holder=holder, expires_at=now + ttl)
                 .where((Lease.name == name) & ((Lease.expires_at < now) | (Lease.holder == holder)))
                 .execute())
        if taken:
            return True
        try:
            with db.atomic():
                Lease.create(name=name, holder=holder, expires_at=now + ttl)
        except IntegrityError:
            return False
        return True


def release_lease(name: str, holder: str) -> None:
    """Give the lease back early so the next run need not wait for it to expire."""
    with write_transaction():
        Lease.delete().where((Lease.name == name) & (Lease.holder == holder)).execute()


def run_job(shop: Shop, job: Job | str, holder: str,
            last_logged: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Run one job if this holder gets its lease; return its summary, or None when another holds it.

    With ``last_logged`` (the scheduler's memory of what each job last said) a summary is logged
    only when it differs from the previous one: "1 mail waits without SMTP" once, not every 10 s.
    """
    spec = job if isinstance(job, Job) else job_table(shop)[job]
    name = spec.name
    now = shop.now()
    ttl = dt.timedelta(seconds=max(spec.interval * 2, 120))
    if not acquire_lease(name, holder, now, ttl):
        return None
    now = shop.now()  # waiting for the write lock may have taken a moment
    with write_transaction():
        run = JobRun.create(name=name, holder=holder, started_at=now)
    summary: dict[str, Any] = {}
    ok = False
    try:
        summary = spec.run(shop, now) or {}
        ok = True
    except Exception:
        log.exception("job %s failed", name)
        summary = {"error": "failed; see the log"}
        _drop_open_reads()
    finally:
        try:
            with write_transaction():
                JobRun.update(finished_at=shop.now(), ok=ok, summary=json.dumps(summary, default=str)).where(
                    JobRun.id == run.id).execute()
        finally:
            release_lease(name, holder)
            flush_calls(shop)  # the job's WeChat calls, also when it ran once from the command line
    said = json.dumps(summary, sort_keys=True, default=str)
    if ok and any(summary.values()) and (last_logged is None or last_logged.get(name) != said):
        log.info("job %s: %s", name, summary)
    if last_logged is not None:
        last_logged[name] = said
    return summary


def _drop_open_reads() -> None:
    """Reconnect this thread: a job that failed may have left a statement open on an old snapshot.

    SQLite refuses to turn a stale snapshot into a write, so recording the failed run's end on that
    connection would fail too, and /readyz would see a job that never finished.
    """
    if not db.is_closed() and not db.in_transaction():
        db.close()
        db.connect()


class Scheduler:
    """APScheduler running every registered job in this process, each under its lease."""

    def __init__(self, shop: Shop, jobs: dict[str, Job] | None = None) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.shop = shop
        self.holder = holder_id()
        self.jobs = jobs if jobs is not None else job_table(shop)
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
            "max_instances": 1, "coalesce": True, "misfire_grace_time": 30})
        self.last_beat: dt.datetime | None = None
        self._lock = threading.Lock()
        self._last_logged: dict[str, str] = {}  # one entry per job, written only by that job's tick

    def _tick(self, name: str) -> None:
        with db.connection_context():
            run_job(self.shop, self.jobs[name], self.holder, self._last_logged)
        with self._lock:
            self.last_beat = self.shop.now()

    def _flush(self) -> None:
        with db.connection_context():
            flush_calls(self.shop)

    def start(self) -> None:
        for name, spec in self.jobs.items():
            self.scheduler.add_job(self._tick, "interval", seconds=spec.interval, args=[name], id=name,
                                   next_run_time=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5))
        # Not a leased job: every process writes its own tally of WeChat calls.
        self.scheduler.add_job(self._flush, "interval", seconds=CALL_TALLY_SECONDS, id="flush_wechat_calls")
        self.scheduler.start()
        log.info("scheduler started as %s with jobs %s", self.holder, sorted(self.jobs))

    def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
