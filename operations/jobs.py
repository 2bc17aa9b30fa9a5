"""The one table of scheduled jobs: what runs, how often, and which function does the work."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

from billing import learners, mail, reconcile, refunds, reports
from billing.shop import Shop

from . import alerts, backups, retention

JobFunction = Callable[[Shop, dt.datetime], dict[str, Any]]


@dataclass(frozen=True)
class Job:
    """A named piece of work repeated every ``interval`` seconds."""

    name: str
    interval: float
    run: JobFunction


def job_table(shop: Shop) -> dict[str, Job]:
    """Every job this service runs, with the intervals its settings ask for."""
    jobs = (
        Job("reconcile", shop.config.reconcile_seconds if shop.config else 60, reconcile.reconcile),
        Job("refunds.reconcile", 60, refunds.reconcile_refunds),
        Job("mail", 10, mail.mail_job),
        Job("renewal_reminders", 3600, learners.renewal_reminder_job),
        Job("audit_verify", 3600, reports.verify_audit_trail),
        Job("alerts", 60, alerts.look_for_trouble),
        Job("backup", 3600, backups.daily_backup),
        Job("retention", 6 * 3600, retention.purge_old_personal_data),
    )
    return {job.name: job for job in jobs}
