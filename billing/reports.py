"""What the creator reads: sales figures, the orders that need attention, search, and CSV exports."""

from __future__ import annotations

import csv
import datetime as dt
import hmac
import io
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from peewee import JOIN

from database import read_snapshot as one_moment  # noqa: F401  (web/ reads a page's rows through it)
from models import AuditEvent, JobRun, License, MailOutbox, Notification, Order, Refund

from . import rollup
from . import console
from .complaints import needing_reply
from .audit import last_event, verify_chain
from .errors import BillingError, paid_with_alipay
from .mail import render_queued_license
from .refunds import refunds_needing_attention

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.timezone.utc
PAGE_SIZE = 25
FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2999, 12, 31)
YUAN = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,2}))?")
STATUSES = ("pending", "paid", "fulfilled", "partially_refunded", "refunded", "closed")
# Every status a creator reads, in Chinese and English (order statuses, then WeChat's refund states).
STATUS_LABELS = {
    "pending": "待支付 Pending", "paid": "已支付 Paid", "fulfilled": "已发放 Licensed",
    "partially_refunded": "部分退款 Partly refunded", "refunded": "已退款 Refunded", "closed": "已关闭 Closed",
    "PROCESSING": "退款中 Processing", "SUCCESS": "已退款 Refunded", "CLOSED": "退款关闭 Closed",
    "ABNORMAL": "退款异常 Abnormal", "FAILED": "退款失败 Failed",
    "active": "有效 Active", "revoked": "已吊销 Revoked", "expired": "已过期 Expired",
}
FINAL_REFUND_STATES = ("SUCCESS", "CLOSED", "FAILED")
# The daily comparison of WeChat's bill with our orders, when a job of this name has run.
BILL_JOB = "bill_compare"


def status_label(status: str | None) -> str:
    """A status as the console shows it: Chinese and English, never snake_case."""
    return STATUS_LABELS.get(status or "", status or "")


def yuan(fen: int | None) -> str:
    """Format fen as yuan with two decimals, exactly: 9900 -> '99.00'."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole}.{cents:02d}"


def parse_yuan(text: str) -> int:
    """Parse a price typed in yuan ('99', '99.9', '99.00') into whole fen without any float."""
    match = YUAN.fullmatch((text or "").strip())
    if match is None:
        raise BillingError("bad_request", "the amount must look like 99.00 (at most two decimals)")
    fen = int(match.group(1)) * 100 + int((match.group(2) or "").ljust(2, "0"))
    if not 1 <= fen <= 100_000_000:
        raise BillingError("bad_request", "the amount must be from 0.01 to 1000000.00 yuan")
    return fen


def shanghai_day_start(day: dt.date) -> dt.datetime:
    """Return the UTC instant at which a Shanghai calendar day begins."""
    return dt.datetime.combine(day, dt.time(), SHANGHAI).astimezone(UTC)


def parse_day(text: str | None) -> dt.date | None:
    """Parse a YYYY-MM-DD form field, or None when empty."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BillingError("bad_request", "dates are written YYYY-MM-DD") from None
    # Day arithmetic at the ends of the calendar overflows (9999-12-31 + 1 day): keep to sane years.
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BillingError("bad_request", f"dates run from {FIRST_DAY} to {LAST_DAY}")
    return day


@dataclass(frozen=True)
class Attention:
    """One thing the creator should look at."""

    kind: str
    order: Order | None
    text: str
    at: dt.datetime | None


def needs_attention(now: dt.datetime) -> list[Attention]:
    """Flagged orders, paid orders without a license, and refunds that ended badly or are stuck."""
    items: list[Attention] = []
    flagged = (Order.select().where(Order.flag.is_null(False) & (Order.status != "refunded"))
               .order_by(Order.created_at.desc()).limit(50))
    for order in flagged:
        items.append(Attention(order.flag, order, order.flag_detail or "", order.paid_at or order.created_at))
    # A fulfilled order gets its license in the same transaction, so only "paid" can lack one.
    unlicensed = (Order.select().join(License, JOIN.LEFT_OUTER, on=(License.order == Order.id))
                  .where((Order.status == "paid") & License.id.is_null() & Order.flag.is_null())
                  .order_by(Order.paid_at.desc()).limit(50))
    for order in unlicensed:
        items.append(Attention("PAID_WITHOUT_LICENSE", order, "paid, but no license was issued",
                               order.paid_at))
    for refund in refunds_needing_attention(now):
        state = "REFUND_" + ("STUCK" if refund.status == "PROCESSING" else refund.status)
        items.append(Attention(state, refund.order, f"{refund.out_refund_no} {yuan(refund.amount_fen)} yuan "
                                                    f"{refund.detail or ''}".strip(), refund.created_at))
    for complaint in needing_reply(now):
        items.append(Attention("COMPLAINT_UNANSWERED", complaint.order,
                               f"投诉 {complaint.complaint_id} 待回复 unanswered; reply by (回复截止) "
                               f"{complaint.reply_due_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}", complaint.reply_due_at))
    return items


def sales_tile(paid_fen: int, refunded_fen: int, previous_paid_fen: int, previous_refunded_fen: int) -> dict[str, Any]:
    """One revenue tile: net (paid less refunded) first, gross and refunds beneath, and the change in net
    against the period just before (the same number of days), in words a creator reads at a glance."""
    net, before = paid_fen - refunded_fen, previous_paid_fen - previous_refunded_fen
    if before == net:
        change = ("与上期持平", "same as the period before")
        trend = "flat"
    elif before <= 0:
        change = (f"上期净收入 ¥{yuan(before)}", f"¥{yuan(before)} net the period before")
        trend = "up" if net > before else "down"
    else:
        # Whole percent, half away from zero, in integers.
        pct = (200 * abs(net - before) + before) // (2 * before)
        sign, trend = ("+", "up") if net > before else ("−", "down")
        change = (f"比上期 {sign}{pct}%（上期 ¥{yuan(before)}）", f"{sign}{pct}% on the period before (¥{yuan(before)})")
    return {"paid_fen": paid_fen, "refunded_fen": refunded_fen, "net_fen": net, "previous_net_fen": before,
            "change": change, "trend": trend}


def dashboard(now: dt.datetime, sandbox: bool = False) -> dict[str, Any]:
    """The dashboard's figures for one book (live, or the simulator's), with days counted in Asia/Shanghai.

    Sales, the funnel and the status counts come from ``daily_figures`` (billing.rollup), never
    from a scan of the order table.
    """
    today = now.astimezone(SHANGHAI).date()
    # Sixty days: the thirty shown and the thirty before them, which each tile is compared with.
    first, week = today - dt.timedelta(days=59), today - dt.timedelta(days=6)
    kept = rollup.figures(first, today, sandbox)
    days = [first + dt.timedelta(days=n) for n in range(60)]
    paid = [(day, kept.day_total(day, "paid_fen")) for day in days]
    refunded = [kept.day_total(day, "refunded_fen") for day in days]
    sales = {label: sales_tile(sum(fen for _, fen in paid[-n:]), sum(refunded[-n:]),
                               sum(fen for _, fen in paid[-2 * n:-n]), sum(refunded[-2 * n:-n]))
             for label, n in (("today", 1), ("7 days", 7), ("30 days", 30))}
    daily = [(day, fen - back) for (day, fen), back in zip(paid[-30:], refunded[-30:])]
    return {"sales": sales, "by_status": kept.by_status,
            "daily": daily, "chart": revenue_chart(daily), "attention": needs_attention(now),
            "chain": chain_status(), "funnel": _funnel_of(kept, week, today),
            "recent": list(Order.select().where(Order.sandbox == sandbox)
                           .order_by(Order.created_at.desc(), Order.id.desc()).limit(8)),
            "refunds": list(Refund.select(Refund, Order).join(Order).where(Order.sandbox == sandbox)
                            .order_by(Refund.id.desc()).limit(8)),
            "bill": last_bill_comparison()}


@dataclass
class FunnelRow:
    """Orders created on one Shanghai day for one course, and how far they got."""

    day: dt.date | None
    course: str
    created: int = 0
    paid: int = 0
    licensed: int = 0
    cancelled: int = 0
    expired: int = 0

    @property
    def conversion(self) -> str:
        """Paid out of created, as a whole percentage."""
        # Half up, in integers: 5 of 8 is 63%, as a person rounds (round() would say 62).
        return f"{(200 * self.paid + self.created) // (2 * self.created)}%" if self.created else "—"


def funnel(since: dt.date, until: dt.date, sandbox: bool = False) -> dict[str, Any]:
    """Orders created per Shanghai day and course → paid → licensed, cancelled, expired (comps left out)."""
    return _funnel_of(rollup.figures(since, until, sandbox), since, until)


def _funnel_of(kept: rollup.Figures, since: dt.date, until: dt.date) -> dict[str, Any]:
    ordered = [FunnelRow(day, course, *(counts[name] for name in rollup.FUNNEL))
               for (day, course), counts in sorted(kept.rows.items(), reverse=True)
               if since <= day <= until and counts["created"]]
    total = FunnelRow(None, "")
    for row in ordered:
        for name in rollup.FUNNEL:
            setattr(total, name, getattr(total, name) + getattr(row, name))
    return {"since": since, "until": until, "rows": ordered, "total": total}


def last_bill_comparison() -> dict[str, Any] | None:
    """What the newest daily comparison of WeChat's bill with our orders found, if one ever ran."""
    run = JobRun.select().where(JobRun.name == BILL_JOB).order_by(JobRun.id.desc()).first()
    if run is None:
        return None
    return {"at": run.finished_at or run.started_at, "ok": run.ok, "summary": json.loads(run.summary or "{}")}


# Up to this many events the dashboard walks the whole chain itself; beyond, it trusts the last
# full walk by the hourly job and walks only what came after it.
FULL_WALK_LIMIT = 5_000
# Before the job's first full walk, the dashboard checks this many of the newest events.
RECENT_WALK = 1_000


def verify_audit_trail(shop: Any, now: dt.datetime) -> dict[str, Any]:
    """Walk the whole audit chain and remember where the walk ended (at most hourly, restarts included)."""
    walk = _last_walk()
    if walk is not None and walk[0].finished_at is not None and now - walk[0].finished_at < dt.timedelta(minutes=55):
        return {}
    end = last_event()
    whole, checked, bad = verify_chain()
    if not whole:
        log.error("ALERT: the audit chain is broken at event %s", bad)
    return {"whole": whole, "checked": checked, "bad": bad,
            "last_id": end[0] if end and whole else None, "last_hash": end[1] if end and whole else None}


def _last_walk() -> tuple[JobRun, dict[str, Any]] | None:
    """The newest finished full walk of the chain (runs that skipped have an empty summary)."""
    run = (JobRun.select().where((JobRun.name == "audit_verify") & (JobRun.ok == True)  # noqa: E712
                                 & JobRun.summary.contains('"whole"'))
           .order_by(JobRun.id.desc()).first())
    return None if run is None else (run, json.loads(run.summary))


def chain_status() -> dict[str, Any]:
    """Whether the audit chain is whole, cheaply enough for every dashboard load."""
    end = last_event()
    if end is None or end[0] <= FULL_WALK_LIMIT:
        whole, checked, bad = verify_chain()
        return {"whole": whole, "checked": checked, "bad": bad, "full": True}
    walk = _last_walk()
    if walk is None:
        return _recent_walk(end[0])
    run, summary = walk
    if not summary.get("whole"):
        return {"whole": False, "checked": summary.get("checked", 0), "bad": summary.get("bad"), "full": True}
    if summary.get("last_id"):
        # Walk from the job's last event itself: it must still hash to what the job saw.
        mark = AuditEvent.get_or_none(AuditEvent.id == summary["last_id"])
        if mark is None or not hmac.compare_digest(mark.hash, summary["last_hash"]):
            return {"whole": False, "checked": summary["checked"], "bad": summary["last_id"], "full": True}
        whole, checked, bad = verify_chain(after=(mark.id - 1, mark.prev_hash))
        return {"whole": whole, "checked": summary["checked"] + checked - 1, "bad": bad, "full": True,
                "walked_at": run.finished_at}
    return _recent_walk(end[0])


def _recent_walk(last_id: int) -> dict[str, Any]:
    """Before any full walk: check the newest events, trusting the hash just before them."""
    start = AuditEvent.get_or_none(AuditEvent.id == last_id - RECENT_WALK)
    whole, checked, bad = (verify_chain(after=(start.id, start.hash)) if start is not None else verify_chain())
    return {"whole": whole, "checked": checked, "bad": bad, "full": False}


def revenue_chart(daily: list[tuple[dt.date, int]], width: int = 600, height: int = 160,
                  axis: int = 22) -> dict[str, Any]:
    """Bars of net revenue per day with a date axis, as numbers a template draws into an SVG."""
    top = max([fen for _, fen in daily] + [1])
    bar = width / max(len(daily), 1)
    bars = []
    for index, (day, fen) in enumerate(daily):
        h = round(max(fen, 0) / top * (height - 24), 1)
        # A date under every 7th bar, counted back from today so the last bar is always named.
        tick = (len(daily) - 1 - index) % 7 == 0
        bars.append({"x": round(index * bar + 1, 1), "y": round(height - h, 1), "w": round(bar - 2, 1),
                     "h": h, "label": f"{day.isoformat()} ¥{yuan(fen)}", "fen": fen, "day": day,
                     "tick": day.strftime("%m-%d") if tick else "", "mid": round(index * bar + bar / 2, 1),
                     # The last date label ends at the bar, so the chart's edge never cuts it.
                     "anchor": "end" if index == len(daily) - 1 else "middle",
                     "value": yuan(fen) if fen and h > 14 else ""})
    return {"width": width, "height": height, "axis": axis, "bars": bars, "top": yuan(top)}


@dataclass(frozen=True)
class OrderFilter:
    """The orders list's search box and filters."""

    q: str = ""
    status: str = ""
    course: str = ""
    since: dt.date | None = None
    until: dt.date | None = None
    page: int = 1


def search_orders(f: OrderFilter) -> tuple[list[Order], int]:
    """Return one page of orders matching the filter, newest first, and how many match."""
    query = Order.select()
    if "\x00" in f.q + f.course:
        # No stored id, address or course holds NUL, and PostgreSQL refuses it in any query.
        return [], 0
    q = f.q.strip()[:100]
    if q:
        # Each id or e-mail the learner may quote, whole or its beginning, through its own index; "contains"
        # reads only the newest orders (billing.console.search). No scan of all orders.
        query = query.where(Order.id.in_(sorted(console.search(q).order_ids)))
    if f.status in STATUSES:
        query = query.where(Order.status == f.status)
    if f.course:
        query = query.where(Order.course == f.course[:64])
    if f.since:
        query = query.where(Order.created_at >= shanghai_day_start(f.since))
    if f.until:
        query = query.where(Order.created_at < shanghai_day_start(f.until + dt.timedelta(days=1)))
    total = query.count()
    page = max(1, f.page)
    rows = list(query.order_by(Order.created_at.desc(), Order.id.desc()).paginate(page, PAGE_SIZE))
    return rows, total


# WeChat Pay's answers a refund may wait on, in words (Chinese, English); the code itself stays in the record.
RETRY_WORDS = {
    "NOT_ENOUGH": ("商户余额不足，充值后会自动重试", "The merchant balance is short; it is retried after you top up"),
    "SYSTEM_ERROR": ("微信支付暂时出错，会自动重试", "WeChat Pay had a passing fault; it is retried by itself"),
    "FREQUENCY_LIMITED": ("请求太频繁，稍后自动重试", "Too many requests for now; it is retried shortly"),
}


def refund_detail_words(detail: str | None, out_trade_no: str | None = None) -> tuple[str, str]:
    """A refund's stored detail as words: a retry in plain words, anything else as a note to read as it is.

    The retry is named after the order's payment service: Alipay's codes are not WeChat's.
    """
    text = detail or ""
    if text.startswith("will retry: "):
        code = text.removeprefix("will retry: ")
        if paid_with_alipay(out_trade_no):
            return ("支付宝暂时无法处理，会自动重试", "Alipay could not take it now; it is retried")
        return RETRY_WORDS.get(code, ("微信支付暂时无法处理，会自动重试", "WeChat Pay could not take it now; it is retried"))
    return ("", "")


def timeline(order: Order) -> list[dict[str, Any]]:
    """Every audit event and every notification of one order, oldest first."""
    items: list[dict[str, Any]] = []
    from .console import event_words, notification_words  # console builds on this module

    method = "alipay" if paid_with_alipay(order.out_trade_no) else "wechat"
    for event in AuditEvent.select().where(AuditEvent.order == order.id).order_by(AuditEvent.id):
        detail = json.loads(event.detail or "{}")
        items.append({"at": event.at, "kind": "event", "what": event.action, "who": event.actor,
                      "ip": event.ip, "detail": detail, "words": event_words(event.action, detail, method)})
    for note in Notification.select().where(Notification.order == order.id).order_by(Notification.id):
        items.append({"at": note.received_at, "kind": "notification",
                      "what": f"notification ({note.kind}) {note.event_type or ''}".strip(),
                      "who": "wechat", "ip": None,
                      "detail": {"result": note.result, "reason": note.reason, "event_id": note.event_id},
                      "words": notification_words(note.kind, note.result, note.reason)})
    items.sort(key=lambda item: item["at"])
    return items


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell that starts like a formula is shown as text by a spreadsheet, not run.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _local(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _csv(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


def _range(since: dt.date | None, until: dt.date | None) -> tuple[dt.datetime, dt.datetime]:
    start = shanghai_day_start(since) if since else dt.datetime(2000, 1, 1, tzinfo=UTC)
    stop = shanghai_day_start(until + dt.timedelta(days=1)) if until else dt.datetime(9999, 1, 1, tzinfo=UTC)
    return start, stop


def orders_csv(since: dt.date | None, until: dt.date | None, sandbox: bool = False) -> bytes:
    """Orders of one book created in the Shanghai date range as UTF-8 CSV with a BOM, amounts in yuan.

    The last column says how each was paid (wechat or alipay): each method's money is settled apart."""
    start, stop = _range(since, until)
    orders = (Order.select().where((Order.created_at >= start) & (Order.created_at < stop)
                                   & (Order.sandbox == sandbox))
              .order_by(Order.created_at))
    return _csv(["created (Asia/Shanghai)", "order", "out_trade_no", "transaction_id", "course", "description",
                 "email", "amount (yuan)", "status", "paid (Asia/Shanghai)", "flag",
                 "list price (yuan)", "discount (yuan)", "code", "method"],
                ([_local(o.created_at), o.public_id, o.out_trade_no, o.transaction_id, o.course_id,
                  o.description, o.email, yuan(o.amount_fen), o.status, _local(o.paid_at), o.flag,
                  yuan(o.amount_fen + (o.discount_fen or 0) if o.list_price_fen is None else o.list_price_fen),
                  yuan(o.discount_fen or 0), _code_of(o), o.payment_method]
                 for o in orders.iterator()))


def _code_of(order: Order) -> str:
    if order.discount_id is None:
        return ""
    return order.discount.code or "launch price"


def refunds_csv(since: dt.date | None, until: dt.date | None, sandbox: bool = False) -> bytes:
    """Refunds of one book asked for in the Shanghai date range as UTF-8 CSV with a BOM."""
    start, stop = _range(since, until)
    refunds = (Refund.select(Refund, Order).join(Order)
               .where((Refund.created_at >= start) & (Refund.created_at < stop) & (Order.sandbox == sandbox))
               .order_by(Refund.created_at))
    return _csv(["requested (Asia/Shanghai)", "out_refund_no", "refund_id", "order", "out_trade_no",
                 "amount (yuan)", "status", "settled (Asia/Shanghai)", "reason", "by", "method"],
                ([_local(r.created_at), r.out_refund_no, r.refund_id, r.order.public_id, r.order.out_trade_no,
                  yuan(r.amount_fen), r.status, _local(r.settled_at), r.reason, r.actor, r.order.payment_method]
                 for r in refunds.iterator()))


def outbox(limit: int = 50) -> list[MailOutbox]:
    """The newest mails of the outbox, sent or waiting (license mails, reminders, alerts), as they read when sent."""
    mails = list(MailOutbox.select().order_by(MailOutbox.id.desc()).limit(limit))
    for mail in mails:
        # A license mail waits unrendered until the mail job sends it: show it as it will go out (not stored).
        rendered = render_queued_license(mail)
        if rendered is not None:
            mail.subject, mail.text, mail.html = rendered[0][:200], rendered[1], rendered[2]
    return mails


def order_by_public_id(public_id: str) -> Order | None:
    """The order a console URL names, or None."""
    return Order.get_or_none(Order.public_id == public_id[:40])


def order_license(order: Order) -> License | None:
    """The license issued for an order, if any."""
    return License.get_or_none(License.order == order.id)


def order_refunds(order: Order) -> list[Refund]:
    """An order's refunds, oldest first."""
    return list(Refund.select().where(Refund.order == order.id).order_by(Refund.id))


def refund_by_number(out_refund_no: str) -> Refund | None:
    """The refund with our refund number, or None."""
    return Refund.get_or_none(Refund.out_refund_no == out_refund_no[:64])
