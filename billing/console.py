"""What the console needs beyond orders: alerts and bill differences to settle, the audit trail, customers, search.

Every state change here runs in one write transaction with its audit event. Searching is bounded: a
prefix is a range on an index (fast at any size); "contains" reads at most CONTAINS_WINDOW of the
newest orders, and the page says so.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from peewee import SQL, NodeList, PostgresqlDatabase, fn

from database import write_transaction
from models import Alert, AuditEvent, BillDifference, Course, License, Order, Refund, db

from . import audit
from .daily_bill import KINDS, bill_names
from .errors import BillingError, paid_with_alipay
from .shop import Shop

UTC = dt.timezone.utc
BEIJING = dt.timezone(dt.timedelta(hours=8))
PAGE_SIZE = 50
# "Contains" has no index to use: it reads the newest this-many orders by primary key and no more,
# so one keystroke costs the same at ten thousand orders as at a million. Measured over the bench's
# million orders: 20,000 made a search's p50 28-30 ms (the goal is p99 < 20 ms), 5,000 made it 10-13 ms
# on a busy machine. Whole ids and e-mail beginnings are still found among all orders through indexes.
CONTAINS_WINDOW = 5_000
SEARCH_LIMIT = 100
NOTE_MAX = 300

# Each alert kind in words, Chinese then English.
ALERT_WORDS = {
    "payment_flagged": ("一笔付款需要你核对", "A payment needs your review"),
    "paid_unlicensed": ("订单已付款但没有许可证", "An order is paid but has no license"),
    "notify_failing": ("微信支付通知多次验签失败", "WeChat Pay notifications keep failing verification"),
    "alipay_notify_failing": ("支付宝通知多次验签失败", "Alipay notifications keep failing verification"),
    "wechat_unreachable": ("微信支付 10 分钟无响应", "WeChat Pay has not answered for 10 minutes"),
    "alipay_unreachable": ("支付宝 10 分钟无响应", "Alipay has not answered for 10 minutes"),
    "backup_failed": ("每日备份失败", "The daily backup failed"),
    "clock_skew": ("服务器时间与微信支付不一致", "This server's clock disagrees with WeChat Pay's"),
    "wechat_config": ("微信支付拒绝了商户的请求或设置", "WeChat Pay refuses the shop's request or settings"),
    "alipay_config": ("支付宝拒绝了本店的应用设置", "Alipay refuses the shop's app settings"),
    # Both methods' bills raise these two; the alert's message says whose bill (WeChat Pay's or Alipay's).
    "bill_differences": ("微信支付或支付宝的日账单与订单不一致", "A daily bill (WeChat Pay's or Alipay's) differs from your orders"),
    "bill_failed": ("无法核对微信支付或支付宝的日账单", "A daily bill (WeChat Pay's or Alipay's) could not be checked"),
    "complaint_new": ("收到微信支付投诉，请在 24 小时内回复", "A WeChat Pay complaint arrived: answer within 24 hours"),
    "complaint_due": ("投诉即将超过回复时限", "A complaint is near its reply deadline"),
}

# Each audit action in words, Chinese then English; an action missing here shows as its code.
ACTION_WORDS = {
    "order.created": ("创建订单", "Order created"),
    "order.wechat_created": ("微信支付已生成付款码", "WeChat Pay made the payment code"),
    "order.code_url_refreshed": ("付款码已更新", "Payment code renewed"),
    "order.paid": ("已付款", "Paid"),
    "order.expired": ("订单过期", "Order expired"),
    "order.cancelled": ("订单取消", "Order cancelled"),
    "payment.late": ("订单过期后才付款", "Paid after the order expired"),
    "payment.amount_mismatch": ("付款金额不符", "Paid amount differs"),
    "payment.second_payment": ("重复付款", "Paid a second time"),
    "payment.refunded_at_wechat": ("付款已在微信支付退回（未发放许可证）", "Paid and refunded at WeChat Pay (no license)"),
    "payment.transaction_reused": ("微信订单号被重复使用", "WeChat transaction id used twice"),
    "payment.merchant_mismatch": ("商户号不符", "Another merchant's payment"),
    "payment.unknown_order": ("未知订单的付款", "Payment for an unknown order"),
    "license.issued": ("发放许可证", "License issued"),
    "license.comped": ("赠送许可证", "License given without payment"),
    "license.revoked": ("吊销许可证", "License revoked"),
    "license.reinstated": ("恢复许可证", "License reinstated"),
    "license.resent": ("重发许可证邮件", "License mail sent again"),
    "license.shortened": ("缩短许可证有效期", "License shortened"),
    "license.downloads_used_up": ("下载次数用完", "Downloads used up"),
    "license_key.rotated": ("更换签名密钥", "Signing key rotated"),
    "refund.requested": ("申请退款", "Refund requested"),
    "refund.succeeded": ("退款成功", "Refund succeeded"),
    "refund.refused": ("退款被拒绝", "Refund refused"),
    "refund.mismatch": ("退款金额不符", "Refund amount differs"),
    "refund.unknown": ("未知退款", "Unknown refund"),
    "refund.closed": ("退款关闭", "Refund closed"),
    "refund.abnormal": ("退款异常", "Refund abnormal"),
    "notification.rejected": ("拒收一条通知", "Notification refused"),
    "wechat.call_failed": ("调用微信支付失败", "Call to WeChat Pay failed"),
    "alipay.call_failed": ("调用支付宝失败", "Call to Alipay failed"),
    "mail.renewal_reminder": ("发送续费提醒", "Renewal reminder sent"),
    "course.saved": ("保存课程", "Course saved"),
    "course.download_limit": ("修改下载次数上限", "Download limit changed"),
    "course.details_saved": ("保存课程介绍或封面", "Course details saved"),
    "bill.checked": ("核对日账单", "Daily bill checked"),
    "retention.purged": ("清理过期数据", "Old data purged"),
    "admin.created": ("创建管理员", "Admin created"),
    "admin.signed_in": ("管理员登录", "Admin signed in"),
    "admin.signed_out": ("管理员退出", "Admin signed out"),
    "admin.password_changed": ("修改密码", "Password changed"),
    "admin.totp_enrolled": ("启用两步验证", "Two-step sign-in enrolled"),
    "admin.mark_paid": ("手动确认付款", "Payment confirmed by hand"),
    "alert.acknowledged": ("确认告警", "Alert acknowledged"),
    "alert.resolved": ("解决告警", "Alert resolved"),
    "bill_difference.resolved": ("处理对账差异", "Bill difference settled"),
    "bill_difference.license_issued": ("对账差异：查询微信后补发许可证", "Bill difference settled: license issued after asking WeChat"),
    "bill_difference.refund_adopted": ("对账差异：登记微信的退款", "Bill difference settled: WeChat's refund recorded"),
    "bill_difference.refused": ("对账差异的操作被拒绝", "Bill difference action refused"),
    "complaint.notify_url_set": ("登记投诉通知地址", "Complaint notification URL set"),
    "complaint.received": ("收到投诉", "Complaint received"),
    "complaint.changed": ("投诉有变化", "Complaint changed"),
    "complaint.phone_viewed": ("查看投诉人电话", "Payer's phone number viewed"),
    "complaint.replied": ("回复投诉", "Complaint answered"),
    "complaint.refund_approved": ("同意投诉退款申请", "Complaint refund request approved"),
    "complaint.refund_rejected": ("拒绝投诉退款申请", "Complaint refund request rejected"),
    "complaint.refund_requested": ("因投诉退款", "Refund for a complaint"),
    "complaint.completed": ("投诉处理完成", "Complaint handled"),
    "fapiao.requested": ("学员申请发票", "Fapiao requested"),
    "fapiao.issued": ("发票已开具", "Fapiao issued"),
}


def action_words(action: str) -> tuple[str, str]:
    """An audit action as (Chinese, English) words; an unknown one as its code twice."""
    return ACTION_WORDS.get(action, (action, action))


# Detail fields worth a sentence on a timeline, in words (Chinese, English); others stay in the raw details.
DETAIL_WORDS = {
    "amount_fen": ("金额", "amount"), "refund_fen": ("退款", "refund"), "paid_fen": ("实付", "paid"),
    "discount_fen": ("优惠", "discount"), "course": ("课程", "course"), "transaction_id": ("微信交易单号", "WeChat transaction"),
    "out_refund_no": ("退款单号", "refund number"), "license": ("许可证", "license"), "expires_at": ("有效期至", "valid until"),
    "reason": ("原因", "reason"), "note": ("说明", "note"), "email": ("邮箱", "e-mail"), "title": ("抬头", "title"),
}
SOURCE_WORDS = {"notification": ("微信通知", "WeChat's notification"), "query": ("主动查询", "a query to WeChat"),
                "alipay_notify": ("支付宝通知", "Alipay's notification"),
                "alipay_notification": ("支付宝通知", "Alipay's notification"),
                "poll": ("学员页面查询", "the learner's page asking"), "bill": ("日账单", "the daily bill"),
                "reconcile": ("定时核对", "the reconciler")}
NOTIFICATION_WORDS = {
    "fulfilled": ("已付款并发放许可证", "paid and licensed"), "duplicate": ("重复通知，已忽略", "a repeat, ignored"),
    "mismatch": ("内容与订单不符，已标记待核对", "did not match the order; flagged for you"),
    "unknown_order": ("不是本店的订单", "not one of our orders"), "not_paid": ("未付款", "not paid"),
    "second_payment": ("重复付款，已标记待退款", "paid a second time; flagged for a refund"),
    "late_payment": ("订单过期后付款，已标记", "paid after the order expired; flagged"),
    "held": ("已暂缓，等你核对", "held for your review"), "processing": ("退款处理中", "refund in progress"),
    "success": ("退款成功", "refund succeeded"), "abnormal": ("退款异常", "refund abnormal"),
    "unknown": ("未知退款", "an unknown refund"), "received": ("已收到", "received"),
}


def _detail_value(key: str, value: Any) -> str:
    if key.endswith("_fen") and isinstance(value, int):
        return "¥" + _yuan(value)
    if key == "expires_at" and isinstance(value, str):
        try:
            at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return "永久 · for good" if at.year - dt.datetime.now(UTC).year > 50 else \
            at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
    return str(value)


# What an Alipay order's timeline says instead: the same events, named after the service that took the money.
ALIPAY_ACTION_WORDS = {
    "order.wechat_created": ("支付宝已生成付款码", "Alipay made the payment code"),
    "payment.refunded_at_wechat": ("付款已在支付宝退回（未发放许可证）", "Paid and refunded at Alipay (no license)"),
    "payment.transaction_reused": ("支付宝交易号被重复使用", "Alipay trade number used twice"),
    "bill_difference.license_issued": ("对账差异：查询支付宝后补发许可证",
                                       "Bill difference settled: license issued after asking Alipay"),
    "bill_difference.refund_adopted": ("对账差异：登记支付宝的退款", "Bill difference settled: Alipay's refund recorded"),
}
ALIPAY_DETAIL_WORDS = {"transaction_id": ("支付宝交易号", "Alipay trade number")}
ALIPAY_SOURCE_WORDS = {"query": ("主动查询", "a query to Alipay")}


def method_action_words(action: str, method: str) -> tuple[str, str]:
    """An audit action as words, named after the payment method of the order it is about."""
    if method == "alipay" and action in ALIPAY_ACTION_WORDS:
        return ALIPAY_ACTION_WORDS[action]
    return action_words(action)


def event_words(action: str, detail: dict[str, Any], method: str = "wechat") -> dict[str, str]:
    """One timeline line in words: what happened (zh, en) and the few facts that matter, money in yuan.

    ``method`` is the order's payment method: an Alipay order's line names Alipay where WeChat's names WeChat.
    """
    alipay = method == "alipay"
    zh, en = method_action_words(action, method)
    facts_zh, facts_en = [], []
    source = detail.get("source")
    sources = {**SOURCE_WORDS, **ALIPAY_SOURCE_WORDS} if alipay else SOURCE_WORDS
    if isinstance(source, str) and source in sources:
        facts_zh.append("来自" + sources[source][0])
        facts_en.append("from " + sources[source][1])
    details = {**DETAIL_WORDS, **ALIPAY_DETAIL_WORDS} if alipay else DETAIL_WORDS
    for key, (kzh, ken) in details.items():
        value = detail.get(key)
        if value in (None, "", [], {}):
            continue
        shown = _detail_value(key, value)
        facts_zh.append(f"{kzh} {shown}")
        facts_en.append(f"{ken} {shown}")
    return {"zh": zh, "en": en, "facts_zh": "，".join(facts_zh), "facts_en": ", ".join(facts_en)}


def notification_words(kind: str, result: str | None, reason: str | None) -> dict[str, str]:
    what = ("微信支付退款通知", "WeChat Pay refund notification") if "refund" in (kind or "") else \
        ("微信支付付款通知", "WeChat Pay payment notification")
    zh, en = NOTIFICATION_WORDS.get(result or "", (result or "", result or ""))
    return {"zh": what[0], "en": what[1], "facts_zh": zh + (f"（{reason}）" if reason else ""),
            "facts_en": en + (f" ({reason})" if reason else "")}


def alert_words(kind: str) -> tuple[str, str]:
    return ALERT_WORDS.get(kind, (kind, kind))


def _yuan(fen: int | None) -> str:
    if fen is None:
        return ""
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole}.{cents:02d}"


# --- alerts and bill differences ------------------------------------------------------------

def open_counts() -> dict[str, int]:
    """How many alerts and bill differences nobody has resolved (the nav badge; two indexed counts)."""
    return {"alerts": Alert.select().where(Alert.resolved_at.is_null()).count(),
            "differences": BillDifference.select().where(BillDifference.resolved_at.is_null()).count()}


def open_alerts(limit: int = 20) -> list[Alert]:
    return list(Alert.select().where(Alert.resolved_at.is_null()).order_by(Alert.at.desc(), Alert.id.desc())
                .limit(limit))


def open_differences(limit: int = 20) -> list[BillDifference]:
    return list(BillDifference.select().where(BillDifference.resolved_at.is_null())
                .order_by(BillDifference.bill_date.desc(), BillDifference.id.desc()).limit(limit))


def difference_words(row: BillDifference) -> dict[str, Any]:
    """One bill difference in words: kind in zh and en, whose bill it is, amounts in yuan."""
    zh, en = KINDS.get(row.kind, (row.kind, row.kind))
    return {"row": row, "zh": zh, "en": en, "wechat": _yuan(row.wechat_fen), "ours": _yuan(row.ours_fen),
            "names": bill_names(row.kind)}


def alerts_page(state: str = "open", limit: int = 200) -> list[Alert]:
    """Alerts newest first: ``open`` (not resolved), ``resolved``, or ``all``."""
    query = Alert.select()
    if state == "open":
        query = query.where(Alert.resolved_at.is_null())
    elif state == "resolved":
        query = query.where(Alert.resolved_at.is_null(False))
    return list(query.order_by(Alert.at.desc(), Alert.id.desc()).limit(limit))


def _note(note: str) -> str:
    text = " ".join(note.split())
    if len(text) > NOTE_MAX:
        raise BillingError("bad_request", f"the note is longer than {NOTE_MAX} characters")
    return text


def acknowledge_alert(shop: Shop, alert_id: int, *, actor: str, ip: str | None) -> Alert:
    """Mark an alert seen: who and when, with its audit event, in one transaction."""
    now = shop.now()
    with write_transaction():
        alert = Alert.get_or_none(Alert.id == alert_id)
        if alert is None:
            raise BillingError("not_found", "no such alert")
        if alert.resolved_at is not None or alert.acknowledged_at is not None:
            raise BillingError("bad_request", "the alert is already acknowledged or resolved")
        alert.acknowledged_at, alert.acknowledged_by = now, actor
        alert.save()
        audit.record("alert.acknowledged", at=now, actor=actor, ip=ip,
                     detail={"alert": alert.id, "kind": alert.kind, "key": alert.key})
    return alert


def resolve_alert(shop: Shop, alert_id: int, *, actor: str, ip: str | None, note: str = "") -> Alert:
    """Mark an alert settled (acknowledging it too, if nobody had): it leaves the badge and the attention card."""
    now = shop.now()
    text = _note(note)
    with write_transaction():
        alert = Alert.get_or_none(Alert.id == alert_id)
        if alert is None:
            raise BillingError("not_found", "no such alert")
        if alert.resolved_at is not None:
            raise BillingError("bad_request", "the alert is already resolved")
        if alert.acknowledged_at is None:
            alert.acknowledged_at, alert.acknowledged_by = now, actor
        alert.resolved_at, alert.resolved_by = now, actor
        alert.save()
        audit.record("alert.resolved", at=now, actor=actor, ip=ip,
                     detail={"alert": alert.id, "kind": alert.kind, "key": alert.key, "note": text})
    return alert


def resolve_difference(shop: Shop, difference_id: int, *, actor: str, ip: str | None, note: str) -> BillDifference:
    """Settle one bill difference with a note saying how; its order (if ours) carries the audit event."""
    now = shop.now()
    text = _note(note)
    if not text:
        raise BillingError("bad_request", "say in a note how the difference was settled")
    with write_transaction():
        row = BillDifference.get_or_none(BillDifference.id == difference_id)
        if row is None:
            raise BillingError("not_found", "no such bill difference")
        if row.resolved_at is not None:
            raise BillingError("bad_request", "the difference is already settled")
        row.resolved_at, row.resolved_by, row.resolution = now, actor, text
        row.save()
        order = Order.get_or_none(Order.out_trade_no == row.out_trade_no) if row.out_trade_no else None
        audit.record("bill_difference.resolved", at=now, actor=actor, ip=ip, order=order,
                     detail={"difference": row.id, "kind": row.kind, "bill_date": row.bill_date.isoformat(),
                             "note": text})
    return row


# --- the audit trail ------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditFilter:
    """The audit page's filters: an order's public id, an actor, an action (or its prefix), Beijing days."""

    order: str = ""
    actor: str = ""
    kind: str = ""
    since: dt.date | None = None
    until: dt.date | None = None
    before: int | None = None  # the page after: events older than this id


@dataclass
class AuditPage:
    rows: list[dict[str, Any]] = field(default_factory=list)
    next_before: int | None = None
    unknown_order: bool = False


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), BEIJING).astimezone(UTC)


def audit_page(f: AuditFilter) -> AuditPage:
    """One page of audit events, newest first (by id), with each action in words."""
    query = AuditEvent.select()
    if f.order:
        order = Order.get_or_none(Order.public_id == f.order[:40]) or Order.get_or_none(
            Order.out_trade_no == f.order[:32])
        if order is None:
            return AuditPage(unknown_order=True)
        query = query.where(AuditEvent.order == order.id)
    if f.actor:
        query = query.where(AuditEvent.actor == f.actor[:120])
    if f.kind:
        kind = f.kind[:64]
        # "refund" means every refund.* action; "refund.succeeded" only that one.
        query = query.where((AuditEvent.action == kind) if "." in kind else
                            ((AuditEvent.action >= kind + ".") & (AuditEvent.action < kind + "/")))
    if f.since:
        query = query.where(AuditEvent.at >= _day_start(f.since))
    if f.until:
        query = query.where(AuditEvent.at < _day_start(f.until + dt.timedelta(days=1)))
    if f.before:
        query = query.where(AuditEvent.id < f.before)
    events = list(query.order_by(AuditEvent.id.desc()).limit(PAGE_SIZE + 1))
    page = AuditPage()
    order_ids = {event.order_id for event in events if event.order_id}
    numbers = {row[0]: (row[1], row[2]) for row in Order.select(Order.id, Order.public_id, Order.out_trade_no)
               .where(Order.id.in_(sorted(order_ids))).tuples()} if order_ids else {}
    public = {key: value[0] for key, value in numbers.items()}
    for event in events[:PAGE_SIZE]:
        paid_with = "alipay" if event.order_id in numbers and paid_with_alipay(numbers[event.order_id][1]) else "wechat"
        zh, en = method_action_words(event.action, paid_with)
        detail = json.loads(event.detail or "{}")
        page.rows.append({"id": event.id, "at": event.at, "actor": event.actor, "action": event.action,
                          "zh": zh, "en": en, "ip": event.ip, "detail": detail,
                          "order": public.get(event.order_id)})
    if len(events) > PAGE_SIZE:
        page.next_before = events[PAGE_SIZE - 1].id
    return page


def audit_kinds() -> list[tuple[str, str, str]]:
    """The actions the filter offers: (code, Chinese, English), grouped by their prefix."""
    return sorted((code, zh, en) for code, (zh, en) in ACTION_WORDS.items())


def chain_words(chain: dict[str, Any]) -> tuple[str, str]:
    """The chain status (reports.chain_status) as a sentence in Chinese and in English."""
    if chain.get("whole"):
        scope_zh = "全部" if chain.get("full") else "最近的"
        scope_en = "all" if chain.get("full") else "the newest"
        return (f"审计记录完整：已核对{scope_zh} {chain.get('checked', 0)} 条记录，没有被改动或删除。",
                f"The audit trail is whole: {scope_en} {chain.get('checked', 0)} events checked, "
                "none changed or removed.")
    return (f"审计记录被改动：第 {chain.get('bad')} 条记录与之前的记录对不上。请立即检查数据库和备份。",
            f"The audit trail was tampered with: event {chain.get('bad')} does not follow from the one "
            "before it. Check the database and its backups now.")


# --- customers and search -------------------------------------------------------------------

def _postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


def _c(node: Any) -> Any:
    """Compare byte by byte, as the prefix indexes are built (m0013)."""
    return NodeList((node, SQL('COLLATE "C"'))) if _postgres() else node


def _prefix(node: Any, q: str) -> Any:
    """``node`` starts with ``q``, as a range an ordinary index serves (LIKE 'q%' would not, everywhere)."""
    upper = q[:-1] + chr(ord(q[-1]) + 1)
    return (_c(node) >= q) & (_c(node) < upper)


def _contains(node: Any, q: str) -> Any:
    # strpos/instr: no LIKE pattern, so % and _ in what was typed are plain characters.
    return (fn.STRPOS(node, q) if _postgres() else fn.INSTR(node, q)) > 0


@dataclass
class SearchResult:
    order_ids: list[int] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    courses: list[Course] = field(default_factory=list)
    window: int = 0  # how many of the newest orders "contains" read (0: it did not run)


def search(text: str) -> SearchResult:
    """Orders whose id, WeChat number or e-mail starts with ``text`` (or, among the newest orders, contains it);
    customers by e-mail; courses whose id or title holds it."""
    q = text.strip()[:100]
    result = SearchResult()
    if not q or "\x00" in q:
        return result
    low = q.lower()
    ids: dict[int, None] = {}
    for node, value in ((Order.public_id, q), (Order.out_trade_no, q), (Order.transaction_id, q),
                        (fn.LOWER(Order.email), low)):
        for row in Order.select(Order.id).where(_prefix(node, value)).limit(SEARCH_LIMIT):
            ids[row.id] = None
    for lic in License.select(License.order).where(License.license_id == q):
        ids[lic.order_id] = None
    if len(low) >= 3:
        newest = Order.select(fn.MAX(Order.id)).scalar() or 0
        window = Order.id > newest - CONTAINS_WINDOW
        for row in (Order.select(Order.id).where(window & _contains(fn.LOWER(Order.email), low))
                    .order_by(Order.id.desc()).limit(SEARCH_LIMIT)):
            ids[row.id] = None
        result.window = min(newest, CONTAINS_WINDOW)
    result.order_ids = list(ids)
    emails = (Order.select(fn.LOWER(Order.email).alias("e")).where(_prefix(fn.LOWER(Order.email), low))
              .group_by(fn.LOWER(Order.email)).order_by(fn.LOWER(Order.email)).limit(10))
    result.customers = [row.e for row in emails]
    # The course list is the creator's own, a few rows: reading it all is cheap.
    result.courses = [c for c in Course.select().order_by(Course.id)
                      if low in c.id.lower() or low in c.title.lower()]
    return result


@dataclass
class Customer:
    email: str
    orders: list[Order]
    licenses: dict[int, License]
    refunds: list[Refund]
    paid_fen: int
    refunded_fen: int

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.refunded_fen


CUSTOMER_ORDERS = 200


def customer(email: str) -> Customer | None:
    """One learner by e-mail (any case): their orders, licenses, what they paid and got back."""
    low = email.strip().lower()[:254]
    if not low or "\x00" in low:
        return None
    orders = list(Order.select(Order, Course).join(Course).where(fn.LOWER(Order.email) == low)
                  .order_by(Order.created_at.desc(), Order.id.desc()).limit(CUSTOMER_ORDERS))
    if not orders:
        return None
    ids = [o.id for o in orders]
    licenses = {lic.order_id: lic for lic in License.select().where(License.order.in_(ids))}
    refunds = list(Refund.select().where(Refund.order.in_(ids)).order_by(Refund.id.desc()))
    paid = sum(o.amount_fen for o in orders if o.paid_at is not None and not o.sandbox)
    refunded = sum(r.amount_fen for r in refunds if r.status == "SUCCESS")
    return Customer(low, orders, licenses, refunds, paid, refunded)


def recent_customers(limit: int = 50) -> list[dict[str, Any]]:
    """E-mails of the newest orders (read from the newest few hundred orders only), newest first."""
    seen: dict[str, dict[str, Any]] = {}
    for order in (Order.select(Order.email, Order.created_at).where(Order.email.is_null(False))
                  .order_by(Order.id.desc()).limit(500)):
        key = order.email.lower()
        if key not in seen:
            seen[key] = {"email": key, "last": order.created_at}
        if len(seen) >= limit:
            break
    return list(seen.values())
