"""WeChat Pay consumer complaints (消费者投诉2.0): heard of by notification or by the job, answered from the console.

A notification only names a complaint (its id and what happened); it is verified exactly like a
payment notification, stored with the complaint's row in one transaction, and answered without a
call to WeChat. The job then fetches the detail and the negotiation history, and lists the last
30 days every quarter hour, so a complaint whose notification was lost is found within the hour.
Replies, refund answers and completion go to WeChat first; only what WeChat accepted is recorded,
each change with its audit event in one transaction. A refund asked from a complaint goes through
the shop's normal refund path (``refunds.request_refund``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from models import Complaint, Order
from wechatpay.client import WeChatPayClient
from wechatpay.complaints import EVENT_TYPES, IMAGE_BYTES, REPLY_CHARS, STATES, ComplaintsClient, image_kind
from wechatpay.errors import ApiError, DecryptError, WeChatPayError

from database import write_transaction

from . import audit
from .errors import BillingError, wechat_unavailable
from .payments import NotificationRefused, NotifyAnswer, keep_notification, open_notification
from .refunds import request_refund
from .shop import Shop

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
BEIJING = dt.timezone(dt.timedelta(hours=8))
# WeChat's rules for merchants: a first reply within 24 hours of the complaint, handled within 72.
REPLY_WITHIN = dt.timedelta(hours=24)
FINISH_WITHIN = dt.timedelta(hours=72)
# When an unanswered complaint is "near its deadline": the second alert, and the dashboard's attention.
DUE_SOON = dt.timedelta(hours=4)
LOOKBACK_DAYS = 30
LIST_EVERY = 15 * 60
MAX_PAGES = 40  # 2,000 complaints in 30 days: a shop with more has other problems than this loop
SYNC_BATCH = 20
NOTIFY_PATH = "/wechatpay/notify/complaint"


class ComplaintsUnavailable(Exception):
    """The shop's WeChat client cannot make complaint calls (not a ``WeChatPayClient``)."""


def complaints_api(shop: Shop) -> ComplaintsClient:
    """The complaint calls of the shop's WeChat client (unwrapped from the metrics wrapper, which counts payments)."""
    client: Any = shop.wechat
    for _ in range(3):
        if isinstance(client, WeChatPayClient):
            return ComplaintsClient(client)
        client = vars(client).get("_client")
    raise ComplaintsUnavailable("the shop's WeChat Pay client does not make complaint calls")


def notification_url(shop: Shop) -> str:
    """Where WeChat Pay should tell us about complaints: beside the payment notify URL, always https."""
    parts = urlsplit(shop.notify_url)
    return f"https://{parts.netloc}{NOTIFY_PATH}"


# --- registering the notification URL --------------------------------------------------------

def register_notification_url(shop: Shop, *, url: str | None = None, actor: str,
                              ip: str | None = None) -> dict[str, str]:
    """Make WeChat send complaint notifications to ``url`` (default: ours); say whether it was created, changed or already so."""
    wanted = url or notification_url(shop)
    parts = urlsplit(wanted)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise BillingError("bad_request", "the complaint notification URL must be https, without a query")
    api = complaints_api(shop)
    try:
        current = api.notification_url()
        if current == wanted:
            outcome = "unchanged"
        elif current is None:
            api.create_notification_url(wanted)
            outcome = "created"
        else:
            api.update_notification_url(wanted)
            outcome = "updated"
    except WeChatPayError as exc:
        _call_failed(shop, "complaint_notification_url", exc, actor=actor, ip=ip)
        raise _refused(exc) from None
    with write_transaction():
        audit.record("complaint.notify_url_set", at=shop.now(), actor=actor, ip=ip,
                     detail={"url": wanted, "outcome": outcome, "before": current})
    return {"url": wanted, "outcome": outcome, "before": current or ""}


# --- hearing of complaints -------------------------------------------------------------------

def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def _new_row(complaint_id: str, complaint_time: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    return {"complaint_id": complaint_id, "complaint_time": complaint_time, "reply_due_at": complaint_time + REPLY_WITHIN,
            "finish_due_at": complaint_time + FINISH_WITHIN, "received_at": now, "state": "NEW", "needs_sync": True}


def receive_complaint_notification(shop: Shop, body: bytes, headers: Mapping[str, str],
                                   ip: str | None = None) -> NotifyAnswer:
    """Verify, keep and note one complaint notification; the job fetches what it names (no call to WeChat here)."""
    now = shop.now()
    try:
        received, note = open_notification(shop, "complaint", body, headers, ip, now)
    except NotificationRefused as refused:
        return refused.answer
    complaint_id = note.resource.get("complaint_id")
    action = str(note.resource.get("action_type"))[:40]
    if note.event_type not in EVENT_TYPES or not isinstance(complaint_id, str) or not 0 < len(complaint_id) <= 64:
        with write_transaction():
            keep_notification(received, "ignored", reason="not a complaint we can act on")
        return NotifyAnswer(204)
    # The notification's own time stands for the complaint's until the detail is fetched.
    told_at = _parse_time(note.create_time) or now
    with write_transaction():
        row = Complaint.get_or_none(Complaint.complaint_id == complaint_id)
        if row is None:
            Complaint.insert(**_new_row(complaint_id, min(told_at, now), now)).execute()
            audit.record("complaint.received", at=now, actor="wechat", ip=ip,
                         detail={"complaint_id": complaint_id, "source": "notification", "action_type": action})
        else:
            Complaint.update(needs_sync=True).where(Complaint.id == row.id).execute()
            audit.record("complaint.changed", at=now, actor="wechat", order=row.order, ip=ip,
                         detail={"complaint_id": complaint_id, "source": "notification", "action_type": action})
        keep_notification(received, "complaint", reason=f"{complaint_id} {action}"[:200],
                          order=row.order if row is not None else None)
    log.warning("complaint %s: %s (notification)", complaint_id, action)
    return NotifyAnswer(204)


def _order_facts(detail: Mapping[str, Any]) -> dict[str, Any]:
    orders = detail.get("complaint_order_info")
    first = orders[0] if isinstance(orders, list) and orders and isinstance(orders[0], dict) else {}
    out_trade_no = first.get("out_trade_no") if isinstance(first.get("out_trade_no"), str) else None
    amount = first.get("amount")
    transaction_id = first.get("transaction_id")
    return {"out_trade_no": out_trade_no[:64] if out_trade_no else None,
            "transaction_id": transaction_id[:32] if isinstance(transaction_id, str) else None,
            "amount_fen": amount if isinstance(amount, int) and not isinstance(amount, bool) else None}


def _fields(detail: Mapping[str, Any], history: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The columns a complaint's detail (and history, when fetched) sets."""
    state = detail.get("complaint_state")
    refund = detail.get("apply_refund_amount")
    times = detail.get("user_complaint_times")
    phone = detail.get("payer_phone")
    values: dict[str, Any] = {
        **_order_facts(detail),
        "state": state if state in STATES else "PENDING",
        "detail": str(detail.get("complaint_detail") or "")[:2000],
        "problem_type": str(detail.get("problem_type"))[:32] if detail.get("problem_type") else None,
        "apply_refund_fen": refund if isinstance(refund, int) and not isinstance(refund, bool) else None,
        "payer_phone_cipher": phone[:2048] if isinstance(phone, str) and phone else None,
        "incoming_user_response": detail.get("incoming_user_response") is True,
        "full_refunded": detail.get("complaint_full_refunded") is True,
        "user_complaint_times": times if isinstance(times, int) and not isinstance(times, bool) else 1,
    }
    media = detail.get("complaint_media_list")
    urls = [url for item in media if isinstance(item, dict) for url in item.get("media_url") or []
            if isinstance(url, str)] if isinstance(media, list) else []
    values["media"] = json.dumps(urls[:20])
    if history is not None:
        values["history"] = json.dumps(history, ensure_ascii=False)[:200_000]
    return values


def record_complaint(shop: Shop, detail: Mapping[str, Any], history: list[dict[str, Any]] | None, *,
                     source: str, ip: str | None = None) -> Complaint:
    """Store what WeChat says of one complaint (its detail, and its history if fetched): the one write path."""
    complaint_id = str(detail.get("complaint_id") or "")[:64]
    if not complaint_id:
        raise BillingError("bad_request", "a complaint without complaint_id")
    now = shop.now()
    values = _fields(detail, history)
    complaint_time = _parse_time(detail.get("complaint_time"))
    with write_transaction():
        order = (Order.get_or_none(Order.out_trade_no == values["out_trade_no"])
                 if values["out_trade_no"] else None)
        row = Complaint.get_or_none(Complaint.complaint_id == complaint_id)
        if row is None:
            Complaint.insert(**_new_row(complaint_id, complaint_time or now, now)).execute()
            row = Complaint.get(Complaint.complaint_id == complaint_id)
            audit.record("complaint.received", at=now, actor="wechat", order=order, ip=ip,
                         detail={"complaint_id": complaint_id, "source": source, "state": values["state"]})
        elif row.state != values["state"] or row.incoming_user_response != values["incoming_user_response"]:
            audit.record("complaint.changed", at=now, actor="wechat", order=order, ip=ip,
                         detail={"complaint_id": complaint_id, "source": source, "before": row.state,
                                 "after": values["state"], "user_waiting": values["incoming_user_response"]})
        if complaint_time is not None:
            values.update(complaint_time=complaint_time, reply_due_at=complaint_time + REPLY_WITHIN,
                          finish_due_at=complaint_time + FINISH_WITHIN)
        if values["state"] == "PROCESSED" and row.completed_at is None:
            values["completed_at"] = now
        Complaint.update(**values, order=order, needs_sync=False, synced_at=now).where(Complaint.id == row.id).execute()
        return Complaint.get_by_id(row.id)


def sync_complaint(shop: Shop, complaint_id: str, *, source: str) -> Complaint:
    """Fetch one complaint's detail and whole negotiation history from WeChat and store them."""
    api = complaints_api(shop)
    detail = api.complaint(complaint_id)
    history = api.negotiation_history(complaint_id)
    return record_complaint(shop, detail, history, source=source)


def _beijing_days(now: dt.datetime) -> tuple[dt.date, dt.date]:
    today = now.astimezone(BEIJING).date()
    return today - dt.timedelta(days=LOOKBACK_DAYS - 1), today


def list_recent(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """List the last 30 days' complaints at WeChat and fetch each one that is new or changed here."""
    api = complaints_api(shop)
    begin, end = _beijing_days(now)
    seen: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page = api.list_complaints(begin, end, offset=len(seen))
        seen.extend(page.complaints)
        if len(page.complaints) < 50 or (page.total is not None and len(seen) >= page.total):
            break
    known = {c.complaint_id: c for c in Complaint.select().where(
        Complaint.complaint_id.in_([str(item.get("complaint_id")) for item in seen]))} if seen else {}
    found = changed = 0
    for item in seen:
        complaint_id = item.get("complaint_id")
        if not isinstance(complaint_id, str):
            continue
        row = known.get(complaint_id)
        if row is None:
            found += 1
        elif (not row.needs_sync and row.state == item.get("complaint_state")
              and row.incoming_user_response == (item.get("incoming_user_response") is True)
              and row.full_refunded == (item.get("complaint_full_refunded") is True)):
            continue
        else:
            changed += 1
        sync_complaint(shop, complaint_id, source="list")
    if found:
        log.warning("%d complaint(s) found by listing that no notification announced", found)
    return {"listed": len(seen), "found": found, "changed": changed}


def sync_named(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Fetch the complaints notifications named since the last run (a few at a time)."""
    named = list(Complaint.select(Complaint.complaint_id).where(Complaint.needs_sync == True)  # noqa: E712
                 .order_by(Complaint.received_at).limit(SYNC_BATCH))
    synced = errors = 0
    for row in named:
        try:
            sync_complaint(shop, row.complaint_id, source="notification")
            synced += 1
        except WeChatPayError as exc:
            errors += 1
            log.warning("complaint %s could not be fetched: %s", row.complaint_id, exc)
    return {"synced": synced, "errors": errors}


# --- what the console does -------------------------------------------------------------------

def sync_now(shop: Shop) -> dict[str, Any]:
    """The creator's "sync with WeChat": list the last 30 days now."""
    try:
        return list_recent(shop, shop.now())
    except ComplaintsUnavailable as exc:
        raise BillingError("wechat_unavailable", str(exc)) from None
    except WeChatPayError as exc:
        raise wechat_unavailable(exc) from None


def refresh_now(shop: Shop, complaint_id: str) -> Complaint:
    """The creator's "fetch again" on one complaint."""
    row = _known(complaint_id)
    try:
        return sync_complaint(shop, row.complaint_id, source="console")
    except WeChatPayError as exc:
        raise wechat_unavailable(exc) from None


def find(complaint_id: str) -> Complaint | None:
    """The complaint with WeChat's id, if we know it."""
    if not complaint_id or len(complaint_id) > 64:
        return None
    return Complaint.get_or_none(Complaint.complaint_id == complaint_id)


def _known(complaint_id: str) -> Complaint:
    row = find(complaint_id)
    if row is None:
        raise BillingError("not_found", "no such complaint")
    return row


def _refused(exc: WeChatPayError) -> BillingError:
    if isinstance(exc, ApiError) and not exc.retryable:
        return BillingError("bad_request", f"WeChat Pay refused: {exc.code} {exc.message}"[:300])
    return wechat_unavailable(exc)


def _call_failed(shop: Shop, call: str, exc: Exception, *, actor: str, ip: str | None,
                 complaint: Complaint | None = None) -> None:
    why = f"{exc.code}: {exc.message}" if isinstance(exc, ApiError) else str(exc) or type(exc).__name__
    with write_transaction():
        audit.record("wechat.call_failed", at=shop.now(), actor=actor, ip=ip,
                     order=complaint.order if complaint is not None else None,
                     detail={"call": call, "complaint_id": complaint.complaint_id if complaint else None,
                             "error": why[:200]})


def reply(shop: Shop, complaint_id: str, text: str, *, actor: str, ip: str | None = None,
          image: bytes | None = None) -> Complaint:
    """Answer the payer through WeChat (with one image, uploaded first); recorded only once WeChat took it."""
    row = _known(complaint_id)
    text = text.strip()
    if not text:
        raise BillingError("bad_request", "write the answer / 请填写回复内容")
    if len(text) > REPLY_CHARS:
        raise BillingError("bad_request", f"the answer is {len(text)} characters; WeChat Pay takes at most "
                                          f"{REPLY_CHARS} / 回复最多 {REPLY_CHARS} 个字")
    if row.state == "PROCESSED":
        raise BillingError("bad_request", "the complaint is completed / 投诉已处理完成")
    if image is not None and (image_kind(image) is None or len(image) > IMAGE_BYTES):
        raise BillingError("bad_request", "the image must be a JPG, PNG or BMP of at most 2 MB / 图片须为 2 MB 以内的 JPG、PNG 或 BMP")
    api = complaints_api(shop)
    try:
        images = (api.upload_image(image),) if image is not None else ()
        api.respond(row.complaint_id, text, images=images)
    except WeChatPayError as exc:
        _call_failed(shop, "complaint_response", exc, actor=actor, ip=ip, complaint=row)
        raise _refused(exc) from None
    now = shop.now()
    with write_transaction():
        Complaint.update(state="PROCESSING", incoming_user_response=False, needs_sync=True,
                         replied_at=row.replied_at or now).where(Complaint.id == row.id).execute()
        audit.record("complaint.replied", at=now, actor=actor, order=row.order, ip=ip,
                     detail={"complaint_id": row.complaint_id, "text": text, "late": now > row.reply_due_at,
                             "images": len(images)})
    return _refresh(shop, row.complaint_id)


def complete(shop: Shop, complaint_id: str, *, actor: str, ip: str | None = None) -> Complaint:
    """Tell WeChat the complaint is handled; the payer is then asked whether it was."""
    row = _known(complaint_id)
    if row.state == "PROCESSED":
        raise BillingError("bad_request", "the complaint is already completed / 投诉已处理完成")
    try:
        complaints_api(shop).complete(row.complaint_id)
    except WeChatPayError as exc:
        _call_failed(shop, "complaint_complete", exc, actor=actor, ip=ip, complaint=row)
        raise _refused(exc) from None
    now = shop.now()
    with write_transaction():
        Complaint.update(state="PROCESSED", incoming_user_response=False, completed_at=now, needs_sync=True).where(
            Complaint.id == row.id).execute()
        audit.record("complaint.completed", at=now, actor=actor, order=row.order, ip=ip,
                     detail={"complaint_id": row.complaint_id})
    return _refresh(shop, row.complaint_id)


def answer_refund_request(shop: Shop, complaint_id: str, *, approve: bool, days: int | None = None,
                          reason: str = "", actor: str, ip: str | None = None) -> Complaint:
    """Approve (refund within ``days`` working days) or reject (with a reason) a complaint's refund request."""
    row = _known(complaint_id)
    if row.problem_type != "REFUND":
        raise BillingError("bad_request", "this complaint does not ask for a refund / 该投诉不是退款申请")
    reason = reason.strip()
    if approve and (days is None or not 0 <= days <= 30):
        raise BillingError("bad_request", "say in how many working days (0-30) the refund starts")
    if not approve and not 0 < len(reason) <= 200:
        raise BillingError("bad_request", "say why the refund is refused (at most 200 characters)")
    try:
        complaints_api(shop).update_refund_progress(
            row.complaint_id, "APPROVE" if approve else "REJECT",
            launch_refund_day=days if approve else None, reject_reason=None if approve else reason)
    except (WeChatPayError, ValueError) as exc:
        _call_failed(shop, "complaint_refund_progress", exc, actor=actor, ip=ip, complaint=row)
        if isinstance(exc, ValueError):
            raise BillingError("bad_request", str(exc)) from None
        raise _refused(exc) from None
    now = shop.now()
    with write_transaction():
        Complaint.update(needs_sync=True).where(Complaint.id == row.id).execute()
        audit.record("complaint.refund_approved" if approve else "complaint.refund_rejected", at=now, actor=actor,
                     order=row.order, ip=ip, detail={"complaint_id": row.complaint_id,
                                                     **({"days": days} if approve else {"reason": reason})})
    return _refresh(shop, row.complaint_id)


def refund_from_complaint(shop: Shop, complaint_id: str, *, amount_fen: int, reason: str, actor: str,
                          ip: str | None = None) -> Any:
    """Refund the complaint's order through the shop's normal refund path, and note which complaint asked."""
    row = _known(complaint_id)
    if row.order is None:
        raise BillingError("refund_not_allowed", "the complaint names no order of this shop")
    refund = request_refund(shop, row.order, amount_fen=amount_fen, reason=reason,
                            revoke_license=True, actor=actor, ip=ip)
    with write_transaction():
        audit.record("complaint.refund_requested", at=shop.now(), actor=actor, order=row.order, ip=ip,
                     detail={"complaint_id": row.complaint_id, "out_refund_no": refund.out_refund_no,
                             "amount_fen": amount_fen})
    return refund


def payer_phone(shop: Shop, complaint: Complaint, *, actor: str, ip: str | None = None) -> str | None:
    """Decrypt the payer's phone number for the creator looking at the complaint; each look is audited."""
    if not complaint.payer_phone_cipher:
        return None
    try:
        phone = complaints_api(shop).decrypt_phone(complaint.payer_phone_cipher)
    except (DecryptError, ComplaintsUnavailable):
        log.error("complaint %s: payer_phone does not decrypt with the merchant key", complaint.complaint_id)
        return None
    with write_transaction():
        audit.record("complaint.phone_viewed", at=shop.now(), actor=actor, order=complaint.order, ip=ip,
                     detail={"complaint_id": complaint.complaint_id})
    return phone


def _refresh(shop: Shop, complaint_id: str) -> Complaint:
    """Fetch a complaint again after we acted on it; if WeChat does not answer now, the job will."""
    try:
        return sync_complaint(shop, complaint_id, source="after_action")
    except WeChatPayError as exc:
        log.warning("complaint %s not refreshed: %s", complaint_id, exc)
        return _known(complaint_id)


# --- what the console shows ------------------------------------------------------------------

def unanswered(row: Complaint) -> bool:
    """Whether the payer waits for the merchant: never answered, or wrote again since."""
    return row.state in ("NEW", "PENDING") or (row.state == "PROCESSING" and row.incoming_user_response)


def listing(limit: int = 200) -> list[Complaint]:
    """The newest complaints first."""
    return list(Complaint.select().order_by(Complaint.complaint_time.desc(), Complaint.id.desc()).limit(limit))


def needing_reply(now: dt.datetime, within: dt.timedelta = DUE_SOON) -> list[Complaint]:
    """Unanswered complaints whose reply deadline is near or past, soonest first."""
    rows = Complaint.select().where(Complaint.state.in_(("NEW", "PENDING")) & (Complaint.reply_due_at <= now + within))
    return list(rows.order_by(Complaint.reply_due_at).limit(50))


def open_complaints() -> list[Complaint]:
    """Every complaint not completed, for the alert job."""
    return list(Complaint.select().where(Complaint.state != "PROCESSED").order_by(Complaint.id).limit(500))


# What the common operate_type codes of the negotiation history mean (others show as their code).
HISTORY_WORDS = {
    "USER_CREATE_COMPLAINT": "用户提交投诉 The payer complained",
    "USER_CONTINUE_COMPLAINT": "用户继续投诉 The payer complained again",
    "USER_RESPONSE": "用户留言 The payer wrote",
    "PLATFORM_RESPONSE": "平台留言 WeChat Pay wrote",
    "MERCHANT_RESPONSE": "商户回复 You answered",
    "MERCHANT_CONFIRM_COMPLETE": "商户反馈处理完成 You marked it handled",
    "MERCHANT_APPROVE_REFUND": "商户同意退款 You approved the refund",
    "MERCHANT_REFUSE_RERUND": "商户拒绝退款 You rejected the refund",
    "USER_APPLY_PLATFORM_SERVICE": "用户申请平台协助 The payer asked WeChat Pay to step in",
    "USER_CANCEL_PLATFORM_SERVICE": "用户取消平台协助 The payer withdrew that request",
    "PLATFORM_SERVICE_FINISHED": "平台协助结束 WeChat Pay finished helping",
    "COMPLAINT_PARTIAL_REFUNDED_SYSTEM_MESSAGE": "部分退款 Partly refunded",
    "COMPLAINT_REFUND_RECEIVED_SYSTEM_MESSAGE": "退款到账 The refund arrived",
    "COMPLAINT_ENTRUSTED_REFUND_SYSTEM_MESSAGE": "受托退款 Refunded on your behalf",
}


@dataclass(frozen=True)
class HistoryEntry:
    """One line of the negotiation history, as the page shows it."""

    at: dt.datetime | None
    operator: str
    kind: str
    text: str
    images: list[str]

    @property
    def words(self) -> str:
        return HISTORY_WORDS.get(self.kind, self.kind)


def history_of(row: Complaint) -> list[HistoryEntry]:
    """The negotiation history WeChat last gave, oldest first."""
    try:
        entries = json.loads(row.history or "[]")
    except ValueError:
        return []
    lines = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        images = [u for u in entry.get("image_list") or [] if isinstance(u, str)]
        lines.append(HistoryEntry(_parse_time(entry.get("operate_time")), str(entry.get("operator") or ""),
                                  str(entry.get("operate_type") or ""), str(entry.get("operate_details") or ""),
                                  images))
    return lines


def image_urls(row: Complaint) -> list[str]:
    """Every image a complaint names: the payer's, then those in its history (the console shows them by index)."""
    try:
        urls = [u for u in json.loads(row.media or "[]") if isinstance(u, str)]
    except ValueError:
        urls = []
    return urls + [u for entry in history_of(row) for u in entry.images]


def image(shop: Shop, complaint_id: str, index: int) -> tuple[bytes, str]:
    """Fetch one of a complaint's images through the shop's signed client; its bytes and content type."""
    row = _known(complaint_id)
    urls = image_urls(row)
    if not 0 <= index < len(urls):
        raise BillingError("not_found", "no such image")
    try:
        data = complaints_api(shop).download_image(urls[index])
    except WeChatPayError as exc:
        raise wechat_unavailable(exc) from None
    kind = image_kind(data) or ".png"
    return data, {".jpg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp"}[kind]


def alerts_due(now: dt.datetime) -> list[tuple[str, str, str]]:
    """The (kind, key, message) of each complaint alert: one at arrival, one when the reply deadline nears."""
    found: list[tuple[str, str, str]] = []
    for row in open_complaints():
        due = row.reply_due_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
        found.append(("complaint_new", f"complaint:{row.complaint_id}:new",
                      f"A WeChat Pay complaint arrived ({row.complaint_id}): answer it by {due} Beijing time "
                      f"at /admin/complaints/{row.complaint_id}. {row.detail[:120]}".strip()))
        if row.state in ("NEW", "PENDING") and row.reply_due_at - now <= DUE_SOON:
            late = "is past" if now >= row.reply_due_at else "is near"
            found.append(("complaint_due", f"complaint:{row.complaint_id}:due",
                          f"Complaint {row.complaint_id} is unanswered and its reply deadline ({due} Beijing time) "
                          f"{late}. WeChat counts unanswered complaints against the shop."))
    return found
