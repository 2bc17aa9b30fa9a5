"""The one table of scheduled jobs: what runs, how often, and which function does the work."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Callable

from billing import daily_bill, learners, mail, reconcile, refunds, reports, rollup, webhooks
from billing.shop import Shop
from wechatpay.errors import NoCertificates, WeChatPayError
from wechatpay.verifier import PlatformVerifier

from . import alerts, backups, complaints, replica, retention

log = logging.getLogger(__name__)

JobFunction = Callable[[Shop, dt.datetime], dict[str, Any]]


@dataclass(frozen=True)
class Job:
    """A named piece of work repeated every ``interval`` seconds."""

    name: str
    interval: float
    run: JobFunction


def job_table(shop: Shop) -> dict[str, Job]:
    """Every job this service runs, with the intervals its settings ask for."""
    jobs: tuple[Job, ...] = (
        Job("reconcile", shop.config.reconcile_seconds if shop.config else 60, reconcile.reconcile),
        Job("refunds.reconcile", 60, refunds.reconcile_refunds),
        Job("mail", 10, mail.mail_job),
        # The creator's webhooks: new audit events into deliveries, then the deliveries that are due.
        Job("webhooks", 10, webhooks.webhooks_job),
        Job("renewal_reminders", 3600, learners.renewal_reminder_job),
        Job("audit_verify", 3600, reports.verify_audit_trail),
        # The dashboard recounts in memory whatever this has not stored yet: a minute's worth at most.
        Job("rollup", 60, rollup.rollup_job),
        Job("alerts", 60, alerts.look_for_trouble),
        Job("backup", 3600, backups.daily_backup),
        Job("retention", 6 * 3600, retention.purge_old_personal_data),
        # WeChat asks merchants with platform certificates to download them at least every 12 hours.
        Job("wechat_certificates", CERTIFICATE_REFRESH_SECONDS, refresh_platform_certificates),
        # Hourly, so yesterday's bill is compared soon after WeChat publishes it (after 10:00 Beijing time).
        Job(BILL_JOB, 3600, check_daily_bills),
        # WeChat's consumer complaints: what notifications named, and a listing that finds what they missed.
        Job("complaints", 60, complaints.complaint_job),
        Job("complaints.list", complaints.LIST_SECONDS, complaints.complaint_list_job),
    )
    if shop.config is not None and shop.config.replica is not None:
        # Litestream's last upload, looked at a few times within the lag the creator allows.
        jobs += (Job("replica", replica.job_interval(shop.config.replica), replica.check_replica),)
    return {job.name: job for job in jobs}


CERTIFICATE_REFRESH_SECONDS = 12 * 3600
BILL_JOB = "bill_compare"


def refresh_platform_certificates(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Download the platform certificates in certificate or both mode; nothing to do in public-key mode."""
    store = shop.verifier.certificates if isinstance(shop.verifier, PlatformVerifier) else None
    if store is None:
        return {}
    try:
        return {"certificates": store.refresh(), "serials": store.serials()}
    except NoCertificates:
        # Public-key-only merchant in "both" mode: the public key verifies; nothing is wrong.
        log.warning("WeChat Pay has no platform certificates for this merchant (证书不存在); "
                    "the public key verifies. LBPAY_WECHATPAY_VERIFY=public_key stops asking.")
        return {"certificates": 0, "serials": store.serials(), "state": "no_certificates"}


def check_daily_bills(shop: Shop, now: dt.datetime, days: list[dt.date] | None = None) -> dict[str, Any]:
    """Compare the recent days' trade bills with our ledger; alert once per day with differences.

    A bill WeChat has not published yet is left for a later run, never an error.
    """
    summary = _check_bills(shop, now, days if days is not None else daily_bill.days_to_check(now),
                           daily_bill.check_bill, WeChatPayError, "WeChat Pay's", key_prefix="")
    if getattr(shop, "alipay", None) is not None:
        summary["alipay"] = check_alipay_bills(shop, now, days)
    return summary


def check_alipay_bills(shop: Shop, now: dt.datetime, days: list[dt.date] | None = None) -> dict[str, Any]:
    """Alipay's bills, by the same rules: a day not published waits, a day with differences alerts once."""
    from alipay.errors import AlipayError
    from billing import alipay_bill

    return _check_bills(shop, now, days if days is not None else alipay_bill.alipay_days_to_check(now),
                        alipay_bill.check_alipay_bill, AlipayError, "Alipay's", key_prefix="alipay_")


def _check_bills(shop: Shop, now: dt.datetime, days: list[dt.date],
                 check: Callable[[Shop, dt.date, dt.datetime], dict[str, Any]], failure: type[Exception],
                 whose: str, key_prefix: str) -> dict[str, Any]:
    """Check each day's bill with ``check``: a day not published waits, a failure or new differences alert once."""
    checked: list[str] = []
    waiting: list[str] = []
    failed: list[str] = []
    differences = 0
    for day in days:
        try:
            result = check(shop, day, now)
        except failure as exc:
            failed.append(day.isoformat())
            alerts.raise_alert("bill_failed", f"{whose} trade bill of {day} could not be checked: {exc}"[:500],
                               now=now, key=f"{key_prefix}bill_failed:{day}", to=shop.config.alert_email)
            continue
        if result["state"] != "checked":
            waiting.append(day.isoformat())
            continue
        checked.append(day.isoformat())
        differences += result["differences"]
        if result["new"]:
            kinds = ", ".join(sorted(set(result["new"])))
            alerts.raise_alert("bill_differences", f"{whose} trade bill of {day} differs from our orders in "
                               f"{len(result['new'])} line(s) ({kinds}). See /admin/bills.",
                               now=now, key=f"{key_prefix}bill_differences:{day}", to=shop.config.alert_email)
    summary: dict[str, Any] = {"checked": checked, "differences": differences}
    if waiting:
        summary["not_ready"] = waiting
    if failed:
        summary["failed"] = failed
    return summary
