"""Prometheus metrics read from the database at scrape time, so every worker and machine tells one truth.

Orders, notifications, licenses, job runs and the mail outbox are rows already: their counts are
exact whichever process answers the scrape. The one thing that is not a row anyway, a call to
WeChat Pay, is tallied in memory (bucketed by latency) and added to ``WeChatCallStat`` every few
seconds by each process, so it costs a caller no write and still adds up over gunicorn workers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Iterable

from peewee import fn

from models import JobRun, License, Notification, Order, OutsideService, WeChatCallStat
from wechatpay.errors import ApiError, MalformedError, TransportError, VerificationError

from billing.shop import Shop
from database import write_transaction

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PAYMENT_TO_LICENSE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# The calls billing makes; anything else on the client passes through uncounted.
COUNTED_CALLS = frozenset({"create_native_order", "query_by_out_trade_no", "query_by_transaction_id",
                           "close_order", "create_refund", "query_refund", "apply_abnormal_refund",
                           "download_certificates",
                           "trade_bill"})
WECHAT = "wechat"
ALIPAY = "alipay"


def _bucket(seconds: float) -> str:
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def outcome_of(exc: BaseException | None) -> str:
    """Name how a call ended: ok, config_error, api_error_4xx, api_error_5xx, transport, unverified, malformed or error."""
    if exc is None:
        return "ok"
    if isinstance(exc, ApiError) and exc.is_config_error:
        # PARAM_ERROR, SIGN_ERROR, a refused Wechatpay-Serial (even as a 500): WeChat answered, the shop must act.
        return "config_error"
    if isinstance(exc, ApiError):
        return "api_error_5xx" if exc.status >= 500 or exc.status == 429 else "api_error_4xx"
    if isinstance(exc, TransportError):
        return "transport"
    if isinstance(exc, VerificationError):
        return "unverified"
    if isinstance(exc, MalformedError):
        return "malformed"
    return "error"


class CallTally:
    """WeChat Pay calls counted in memory and written to the database now and then, never on the caller's path.

    A call used to cost its own write transaction (one of three per order). Now the tally is
    written by ``flush``: every few seconds by this process's scheduler, and before ``/metrics``
    or the alerts job reads the table, so what they show is at most a few seconds behind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
        # Per service (WeChat Pay, Alipay): the last answer, and since when and until when it has not answered.
        self._health: dict[str, list[dt.datetime | None]] = {}

    def add(self, endpoint: str, outcome: str, seconds: float, now: dt.datetime, service: str = WECHAT) -> None:
        """Count one call and whether the service answered it (a transport error or a 5xx is "not reached")."""
        with self._lock:
            tally = self._calls[(endpoint, outcome, _bucket(seconds))]
            tally[0] += 1
            tally[1] += seconds
            health = self._health.setdefault(service, [None, None, None])  # last ok, failing from, last failure
            if outcome not in ("transport", "api_error_5xx"):
                health[0], health[1] = now, None
            else:
                health[1] = health[1] or now
                health[2] = now

    def _take(self) -> tuple[dict[tuple[str, str, str], list[float]], dict[str, list[dt.datetime | None]]]:
        with self._lock:
            taken = (dict(self._calls), dict(self._health))
            self._calls.clear()
            self._health = {}
        return taken

    def flush(self) -> int:
        """Write what was counted since the last flush in one transaction; return how many calls. Never raises."""
        calls, health = self._take()
        if not calls:
            return 0
        try:
            with write_transaction():
                for (endpoint, outcome, le), (count, seconds) in calls.items():
                    (WeChatCallStat.insert(endpoint=endpoint, outcome=outcome, le=le, calls=int(count),
                                           seconds=seconds)
                     .on_conflict(conflict_target=[WeChatCallStat.endpoint, WeChatCallStat.outcome,
                                                   WeChatCallStat.le],
                                  update={WeChatCallStat.calls: WeChatCallStat.calls + int(count),
                                          WeChatCallStat.seconds: WeChatCallStat.seconds + seconds})
                     .execute())
                for service, (last_ok, failing_from, last_failure) in health.items():
                    if last_ok is not None:
                        (OutsideService.insert(name=service, failing_since=None, last_ok_at=last_ok)
                         .on_conflict(conflict_target=[OutsideService.name],
                                      update={OutsideService.failing_since: None,
                                              OutsideService.last_ok_at: last_ok}).execute())
                    if failing_from is not None:
                        (OutsideService.insert(name=service, failing_since=failing_from, last_failure_at=last_failure)
                         .on_conflict(conflict_target=[OutsideService.name],
                                      update={OutsideService.failing_since: fn.COALESCE(
                                          OutsideService.failing_since, failing_from),
                                          OutsideService.last_failure_at: last_failure}).execute())
        except Exception:  # a metric must never cost a payment, nor stop a job
            log.warning("could not record %d WeChat Pay call metrics", sum(int(c) for c, _ in calls.values()),
                        exc_info=True)
            return 0
        return sum(int(c) for c, _ in calls.values())


class CountedWeChat:
    """Wraps the WeChat Pay client so that every call is counted and timed; everything else passes through.

    A configuration error (``ApiError.kind == "config"``) also raises the ``wechat_config`` alert:
    no retry fixes it, so the creator must hear of it at once.
    """

    def __init__(self, client: Any, clock: Callable[[], dt.datetime],
                 alert_to: Callable[[], str | None] = lambda: None) -> None:
        self._client = client
        self._clock = clock
        self._alert_to = alert_to
        self.tally = CallTally()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in COUNTED_CALLS or not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            failure: BaseException | None = None
            # Which payment service the call goes to (the router knows; a bare WeChat client is WeChat).
            service_for = getattr(self._client, "service_for", None)
            service = service_for(name, args, kwargs) if callable(service_for) else WECHAT
            try:
                return attribute(*args, **kwargs)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                outcome = outcome_of(failure)
                endpoint = name if service == WECHAT else f"{service}:{name}"
                self.tally.add(endpoint, outcome, time.monotonic() - started, self._clock(), service)
                if outcome == "config_error" and isinstance(failure, ApiError):
                    if service == WECHAT:
                        self._config_alert(name, failure)
                    else:
                        self._alipay_config_alert(name, failure)

        return counted

    def _config_alert(self, call: str, error: ApiError) -> None:
        from .alerts import raise_alert

        now = self._clock()
        what = "the Wechatpay-Serial (public-key id) we send" if error.about_serial else "the shop's request or settings"
        message = (f"WeChat Pay refused {call} with {error.status} {error.code}: {error.message[:300]}. "
                   f"This is not an outage: {what} must be fixed (see the README's WeChat Pay settings); "
                   "learners are told the shop must fix something.")
        try:
            raise_alert("wechat_config", message, now=now, key=f"wechat_config:{call}:{error.code}:{now:%Y%m%d}",
                        to=self._alert_to())
        except Exception:  # an alert must never cost the caller its answer
            log.warning("could not raise the wechat_config alert", exc_info=True)


    def _alipay_config_alert(self, call: str, error: ApiError) -> None:
        """Alipay refused the shop's app (a signature, an app id, a contract): learners choosing Alipay read
        alipay_setup_error, which promises the shop has been told; this tells it."""
        from .alerts import raise_alert

        now = self._clock()
        message = (f"Alipay refused {call}: {error.message[:300]} ({error.code}). This is not an outage: the "
                   "shop's Alipay app settings (LBPAY_ALIPAY_*: app id, keys or certificates, seller id) or its "
                   "contract must be fixed; learners who choose Alipay are told the shop must fix something "
                   "and may pay with WeChat Pay meanwhile.")
        try:
            raise_alert("alipay_config", message, now=now, key=f"alipay_config:{call}:{error.code}:{now:%Y%m%d}",
                        to=self._alert_to())
        except Exception:  # an alert must never cost the caller its answer
            log.warning("could not raise the alipay_config alert", exc_info=True)


def flush_calls(shop: Shop) -> int:
    """Write this process's tally of WeChat Pay calls for ``shop`` (before reading the table, and every few seconds)."""
    return shop.wechat.tally.flush() if isinstance(shop.wechat, CountedWeChat) else 0


# --- exposition -----------------------------------------------------------------------------

def _labels(values: dict[str, str]) -> str:
    if not values:
        return ""
    escaped = (f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
               .replace("\n", "\\n") for k, v in values.items())
    return "{" + ",".join(escaped) + "}"


class Exposition:
    """Lines of Prometheus text format, one HELP and TYPE per metric family."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, text: str) -> None:
        self.lines.append(f"# HELP {name} {text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        number = repr(float(value)) if not float(value).is_integer() else str(int(value))
        self.lines.append(f"{name}{_labels(labels)} {number}")

    def histogram(self, name: str, bounds: Iterable[float], counts: dict[str, int], total: float,
                  **labels: str) -> None:
        """Write cumulative buckets from per-bucket counts keyed by bound (``repr``) or ``+Inf``."""
        running = 0
        for bound in bounds:
            running += counts.get(repr(bound), 0)
            self.sample(name + "_bucket", running, **labels, le=repr(bound))
        running += counts.get("+Inf", 0)
        self.sample(name + "_bucket", running, **labels, le="+Inf")
        self.sample(name + "_sum", total, **labels)
        self.sample(name + "_count", running, **labels)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _parse_rfc3339(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def render_metrics(now: dt.datetime) -> str:
    """Return every metric in Prometheus text format, computed from the database now."""
    out = Exposition()

    out.family("lbpay_orders", "gauge", "Orders by status.")
    for status, count in (Order.select(Order.status, fn.COUNT(Order.id)).group_by(Order.status).tuples()):
        out.sample("lbpay_orders", count, status=status)
    out.family("lbpay_orders_flagged", "gauge", "Orders that need the creator, by flag.")
    for flag, count in (Order.select(Order.flag, fn.COUNT(Order.id)).where(Order.flag.is_null(False))
                        .group_by(Order.flag).tuples()):
        out.sample("lbpay_orders_flagged", count, flag=flag)

    out.family("lbpay_notifications_total", "counter",
               "Payment notifications received, by result (fulfilled, duplicate, bad_signature, "
               "stale_timestamp, probe, mismatch, ...).")
    for kind, result, count in (Notification.select(Notification.kind, Notification.result,
                                                    fn.COUNT(Notification.id))
                                .group_by(Notification.kind, Notification.result).tuples()):
        out.sample("lbpay_notifications_total", count, kind=kind, result=result)

    _wechat_calls(out)
    _alipay_calls(out)
    _payment_to_license(out)
    _jobs(out, now)
    _outbox(out)

    _replica(out, now)

    out.family("lbpay_licenses", "gauge", "Licenses issued, by signing key id.")
    for kid, count in License.select(License.kid, fn.COUNT(License.id)).group_by(License.kid).tuples():
        out.sample("lbpay_licenses", count, kid=kid)
    return out.text()


def _replica(out: Exposition, now: dt.datetime) -> None:
    """The off-machine replica's lag, as the replica job last saw Litestream's uploads (absent without one)."""
    service = OutsideService.get_or_none(OutsideService.name == "replica")
    if service is None:
        return
    # As the replica job counts it: from the last upload, or from the first look that found no Litestream.
    since = max((t for t in (service.last_ok_at, service.failing_since) if t is not None), default=None)
    out.family("lbpay_replica_lag_seconds", "gauge",
               "Seconds since Litestream last brought the off-machine replica up to date.")
    out.sample("lbpay_replica_lag_seconds", max(0.0, round((now - since).total_seconds(), 3)) if since else 0)
    out.family("lbpay_replica_last_sync_seconds", "gauge",
               "Unix time Litestream last brought the off-machine replica up to date (0: not yet).")
    out.sample("lbpay_replica_last_sync_seconds", service.last_ok_at.timestamp() if service.last_ok_at else 0)


def _wechat_calls(out: Exposition) -> None:
    buckets: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for row in WeChatCallStat.select().where(~WeChatCallStat.endpoint.startswith(ALIPAY + ":")):
        buckets[(row.endpoint, row.outcome)][row.le] = row.calls
        sums[(row.endpoint, row.outcome)] += row.seconds
    out.family("lbpay_wechat_api_calls_total", "counter", "Calls to WeChat Pay by endpoint and outcome.")
    for (endpoint, outcome), counts in sorted(buckets.items()):
        out.sample("lbpay_wechat_api_calls_total", sum(counts.values()), endpoint=endpoint, outcome=outcome)
    out.family("lbpay_wechat_api_seconds", "histogram", "Latency of calls to WeChat Pay, retries included.")
    for (endpoint, outcome), counts in sorted(buckets.items()):
        out.histogram("lbpay_wechat_api_seconds", LATENCY_BUCKETS, counts, sums[(endpoint, outcome)],
                      endpoint=endpoint, outcome=outcome)
    service = OutsideService.get_or_none(OutsideService.name == WECHAT)
    out.family("lbpay_wechat_failing_since_seconds", "gauge",
               "Unix time since which WeChat Pay has not answered (0 while it answers).")
    failing = service.failing_since.timestamp() if service is not None and service.failing_since else 0
    out.sample("lbpay_wechat_failing_since_seconds", failing)
    out.family("lbpay_wechat_config_errors_total", "counter",
               "Calls WeChat Pay refused because the shop's request or settings are wrong (not an outage).")
    out.sample("lbpay_wechat_config_errors_total",
               sum(sum(counts.values()) for (_, outcome), counts in buckets.items() if outcome == "config_error"))


def _alipay_calls(out: Exposition) -> None:
    """Calls to Alipay, by the billing call they served (create_native_order is alipay.trade.precreate…)."""
    buckets: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for row in WeChatCallStat.select().where(WeChatCallStat.endpoint.startswith(ALIPAY + ":")):
        call = row.endpoint.split(":", 1)[1]
        buckets[(call, row.outcome)][row.le] = row.calls
        sums[(call, row.outcome)] += row.seconds
    out.family("lbpay_alipay_api_calls_total", "counter", "Calls to Alipay by billing call and outcome.")
    for (call, outcome), counts in sorted(buckets.items()):
        out.sample("lbpay_alipay_api_calls_total", sum(counts.values()), call=call, outcome=outcome)
    out.family("lbpay_alipay_api_seconds", "histogram", "Latency of calls to Alipay, retries included.")
    for (call, outcome), counts in sorted(buckets.items()):
        out.histogram("lbpay_alipay_api_seconds", LATENCY_BUCKETS, counts, sums[(call, outcome)],
                      call=call, outcome=outcome)
    service = OutsideService.get_or_none(OutsideService.name == ALIPAY)
    out.family("lbpay_alipay_failing_since_seconds", "gauge",
               "Unix time since which Alipay has not answered (0 while it answers, or never called).")
    out.sample("lbpay_alipay_failing_since_seconds",
               service.failing_since.timestamp() if service is not None and service.failing_since else 0)


def wechat_setup(client: Any) -> tuple[bool, str]:
    """Whether this process's WeChat Pay client has met a configuration problem (a refused key id), and which."""
    status = getattr(client, "serial_status", None)
    problem = getattr(client, "serial_problem", None)
    if status == "rejected":
        return False, f"configuration error: {problem or 'WeChat Pay refuses our Wechatpay-Serial'}"
    return True, f"Wechatpay-Serial {status}" if isinstance(status, str) else "ok"


def render_client_metrics(client: Any) -> str:
    """The per-process facts of the WeChat Pay client (not rows): its serial check, probes, failovers."""
    out = Exposition()
    ok, _ = wechat_setup(client)
    out.family("lbpay_wechat_config_problem", "gauge",
               "1 while this process's WeChat Pay client has a configuration problem (a refused public-key id).")
    out.sample("lbpay_wechat_config_problem", 0 if ok else 1)
    for name, attribute, text in (("lbpay_wechat_probe_retries_total", "probe_retries",
                                   "SIGNTEST probe answers retried by this process."),
                                  ("lbpay_wechat_failovers_total", "failovers",
                                   "Calls this process moved to the backup host.")):
        value = getattr(client, attribute, None)
        if isinstance(value, int):
            out.family(name, "counter", text)
            out.sample(name, value)
    return out.text()


def _payment_to_license(out: Exposition) -> None:
    counts: dict[str, int] = defaultdict(int)
    total = 0.0
    query = (License.select(License.issued_at, Order.success_time).join(Order, on=(License.order == Order.id))
             .where(Order.success_time.is_null(False)).tuples())
    for issued_at, success_time in query.iterator():
        paid = _parse_rfc3339(success_time)
        if paid is None:
            continue
        seconds = max(0.0, (issued_at - paid).total_seconds())
        total += seconds
        for bound in PAYMENT_TO_LICENSE_BUCKETS:
            if seconds <= bound:
                counts[repr(bound)] += 1
                break
        else:
            counts["+Inf"] += 1
    out.family("lbpay_payment_to_license_seconds", "histogram",
               "From the moment WeChat Pay says the learner paid to the license being issued.")
    out.histogram("lbpay_payment_to_license_seconds", PAYMENT_TO_LICENSE_BUCKETS, counts, total)


def _jobs(out: Exposition, now: dt.datetime) -> None:
    fixes: dict[str, int] = defaultdict(int)
    runs = (JobRun.select(JobRun.summary).where((JobRun.name == "reconcile") & (JobRun.ok == True)  # noqa: E712
                                                 & (JobRun.summary != "{}")).tuples())
    for (summary,) in runs.iterator():
        try:
            values = json.loads(summary)
        except ValueError:
            continue
        for what, count in values.items():
            if what != "queried" and isinstance(count, int) and not isinstance(count, bool):
                fixes[what] += count
    out.family("lbpay_reconcile_fixes_total", "counter",
               "What reconciliation fixed that notifications had missed (fulfilled, closed, flagged, errors).")
    for what in sorted(fixes):
        out.sample("lbpay_reconcile_fixes_total", fixes[what], what=what)
    out.family("lbpay_job_last_success_seconds", "gauge", "Unix time a scheduled job last finished well.")
    for name, finished in (JobRun.select(JobRun.name, fn.MAX(JobRun.finished_at))
                           .where(JobRun.ok == True).group_by(JobRun.name).tuples()):  # noqa: E712
        if finished is not None:
            moment = JobRun.finished_at.python_value(finished)
            out.sample("lbpay_job_last_success_seconds", moment.timestamp(), job=name)


def _outbox(out: Exposition) -> None:
    import models

    outbox = getattr(models, "MailOutbox", None)
    out.family("lbpay_mail_outbox_depth", "gauge", "Mails waiting to be sent.")
    if outbox is None:
        out.sample("lbpay_mail_outbox_depth", 0)
        return
    out.sample("lbpay_mail_outbox_depth",
               outbox.select().where(outbox.sent_at.is_null() & outbox.next_attempt_at.is_null(False)).count())
