"""Simulated consumer complaints (消费者投诉2.0): the payer complains from the phone, the merchant answers by API.

What the simulator keeps of WeChat's rules: a notification only after the merchant registered a URL,
and only for what the payer or the platform does (the merchant's own replies are not notified); the
first reply moves PENDING to PROCESSING; completing moves it to PROCESSED; the list spans at most
30 days and 50 a page; payer_phone is RSA-OAEP encrypted with the merchant's certificate key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import string
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, abort, current_app, g, render_template, request, url_for

from wechatpay.complaints import image_kind
from wechatpay.crypto import aead_encrypt, encrypt_sensitive, load_public_key, make_nonce

from .api import json_response
from .delivery import Notification
from .refusal import Refusal, param_error
from .rules import parse_json_object
from .state import CHINA, Order, SandboxState, compact_json, rfc3339

bp = Blueprint("complaints", __name__)

EXTENSION = "wechatpay_sandbox_complaints"
PROBLEM_TYPES = ("REFUND", "SERVICE_NOT_WORK", "OTHERS")
EVENT_SUMMARY = {"COMPLAINT.CREATE": "产生新投诉", "COMPLAINT.STATE_CHANGE": "投诉单状态变化"}


@dataclass
class Complaint:
    """One complaint as WeChat Pay holds it."""

    complaint_id: str
    order: Order
    created_at: float
    detail: str
    phone: str
    problem_type: str
    apply_refund_amount: int | None
    state: str = "PENDING"
    incoming_user_response: bool = False
    user_complaint_times: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    notification_ids: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # media ids of what the payer attached


class ComplaintDesk:
    """The complaints and the registered notification URL; shares the simulator's lock and courier."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.complaints: dict[str, Complaint] = {}
        self.notify_url: str | None = None
        self.images: dict[str, bytes] = {}
        self._log_seq = 0
        self._key = load_public_key(state.config.merchant_public_key_pem)
        self.lock: threading.RLock = state.lock

    # --- the payer ------------------------------------------------------------------------------

    def file(self, out_trade_no: str, detail: str, *, phone: str = "13800138000", problem_type: str = "OTHERS",
             apply_refund_amount: int | None = None, images: tuple[bytes, ...] = ()) -> Complaint:
        """The payer complains about a paid order; the merchant is told if it registered a URL."""
        if problem_type not in PROBLEM_TYPES:
            raise ValueError("problem_type is REFUND, SERVICE_NOT_WORK or OTHERS")
        detail = detail.strip()
        if not 1 <= len(detail) <= 300:
            raise ValueError("the complaint says something, in at most 300 characters")
        with self.lock:
            order = self.state.order(out_trade_no)
            if not order.paid:
                raise ValueError("only a paid order can be complained about")
            if problem_type == "REFUND":
                amount = order.total if apply_refund_amount is None else apply_refund_amount
                if not 1 <= amount <= order.total:
                    raise ValueError("the refund asked for is 1 fen up to the order's amount")
                apply_refund_amount = amount
            else:
                apply_refund_amount = None
            now = self.state.now()
            complaint_id = "2000" + dt.datetime.fromtimestamp(now, CHINA).strftime("%Y%m%d") + _digits(15)
            earlier = sum(1 for c in self.complaints.values() if c.order.openid == order.openid)
            if any(image_kind(image) is None for image in images) or len(images) > 4:
                raise ValueError("at most 4 images, each a JPG, PNG or BMP")
            complaint = Complaint(complaint_id=complaint_id, order=order, created_at=now, detail=detail,
                                  phone=phone, problem_type=problem_type, apply_refund_amount=apply_refund_amount,
                                  user_complaint_times=earlier + 1, images=[self.keep_image(i) for i in images])
            self._log(complaint, "投诉人", "USER_CREATE_COMPLAINT", detail)
            self.complaints[complaint_id] = complaint
            notification = self._notify(complaint, "COMPLAINT.CREATE", "CREATE_COMPLAINT")
        self._dispatch(notification)
        return complaint

    def user_message(self, complaint_id: str, text: str) -> Complaint:
        """The payer writes again (USER_RESPONSE): the complaint waits for the merchant's answer."""
        with self.lock:
            complaint = self.get(complaint_id)
            if complaint.state == "PROCESSED":
                # A payer unhappy with a completed complaint complains again: it reopens.
                complaint.state = "PENDING"
                complaint.user_complaint_times += 1
                self._log(complaint, "投诉人", "USER_CONTINUE_COMPLAINT", text)
                action = "CONTINUE_COMPLAINT"
            else:
                self._log(complaint, "投诉人", "USER_RESPONSE", text)
                action = "USER_RESPONSE"
            complaint.incoming_user_response = True
            notification = self._notify(complaint, "COMPLAINT.STATE_CHANGE", action)
        self._dispatch(notification)
        return complaint

    def resend(self, complaint_id: str) -> Notification:
        """Send the complaint's latest notification again (same id and ciphertext)."""
        with self.lock:
            complaint = self.get(complaint_id)
            if not complaint.notification_ids:
                raise LookupError("no notification was made for this complaint (no URL registered then)")
            notification = self.state.notifications[complaint.notification_ids[-1]]
        self.state.courier.replay(notification)
        return notification

    def keep_image(self, data: bytes) -> str:
        """Store an image; return its media id."""
        media_id = "MEDIA" + secrets.token_urlsafe(24)
        with self.lock:
            self.images[media_id] = data
        return media_id

    # --- the merchant ---------------------------------------------------------------------------

    def get(self, complaint_id: str) -> Complaint:
        with self.lock:
            complaint = self.complaints.get(complaint_id)
        if complaint is None:
            raise Refusal(404, "RESOURCE_NOT_EXISTS", "投诉单不存在")
        return complaint

    def respond(self, complaint_id: str, content: str, images: list[str]) -> None:
        with self.lock:
            complaint = self.get(complaint_id)
            if complaint.state == "PROCESSED":
                raise Refusal(400, "INVALID_REQUEST", "投诉单已处理完成，无法回复")
            unknown = [m for m in images if m not in self.images]
            if unknown:
                raise param_error("response_images", "图片media_id无效 (unknown media_id)", unknown[0])
            complaint.state = "PROCESSING"
            complaint.incoming_user_response = False
            self._log(complaint, "商户", "MERCHANT_RESPONSE", content,
                      [url_for("complaints.download_image", media_id=m, _external=True) for m in images])

    def complete(self, complaint_id: str) -> None:
        with self.lock:
            complaint = self.get(complaint_id)
            if complaint.state == "PROCESSED":
                return
            complaint.state = "PROCESSED"
            complaint.incoming_user_response = False
            self._log(complaint, "商户", "MERCHANT_CONFIRM_COMPLETE", "商户反馈处理完成")

    def refund_progress(self, complaint_id: str, action: str, text: str) -> None:
        with self.lock:
            complaint = self.get(complaint_id)
            if complaint.problem_type != "REFUND":
                raise Refusal(400, "INVALID_REQUEST", "该投诉单不是申请退款单")
            if action == "APPROVE":
                self._log(complaint, "商户", "MERCHANT_APPROVE_REFUND", text)
                complaint.state = "PROCESSING"
            else:
                self._log(complaint, "商户", "MERCHANT_REFUSE_RERUND", text)
                complaint.state = "PROCESSED"

    # --- views ----------------------------------------------------------------------------------

    def view(self, complaint: Complaint) -> dict[str, Any]:
        """The complaint object of the list and detail APIs."""
        with self.lock:
            order = complaint.order
            refunded = sum(self.state.refunds[no].request.refund for no in order.refund_nos
                           if self.state.refunds[no].status == "SUCCESS")
            return {
                "complaint_id": complaint.complaint_id,
                "complaint_time": rfc3339(complaint.created_at),
                "complaint_detail": complaint.detail,
                "complainted_mchid": self.state.config.mchid,
                "complaint_state": complaint.state,
                "payer_phone": encrypt_sensitive(self._key, complaint.phone),
                "payer_openid": order.openid,
                "complaint_order_info": [{"transaction_id": order.transaction_id,
                                          "out_trade_no": order.out_trade_no, "amount": order.total}],
                "complaint_media_list": [{"media_type": "USER_COMPLAINT_IMAGE", "media_url": [
                    url_for("complaints.download_image", media_id=m, _external=True) for m in complaint.images]}]
                if complaint.images else [],
                "service_order_info": [],
                "complaint_full_refunded": refunded >= order.total,
                "incoming_user_response": complaint.incoming_user_response,
                "problem_description": complaint.detail[:50],
                "problem_type": complaint.problem_type,
                **({"apply_refund_amount": complaint.apply_refund_amount}
                   if complaint.apply_refund_amount is not None else {}),
                "user_complaint_times": complaint.user_complaint_times,
                "user_tag_list": [],
            }

    def in_days(self, begin: dt.date, end: dt.date) -> list[Complaint]:
        with self.lock:
            found = [c for c in self.complaints.values()
                     if begin <= dt.datetime.fromtimestamp(c.created_at, CHINA).date() <= end]
        return sorted(found, key=lambda c: (c.created_at, c.complaint_id))

    # --- inside ---------------------------------------------------------------------------------

    def _log(self, complaint: Complaint, operator: str, kind: str, details: str, images: list[str] | None = None) -> None:
        self._log_seq += 1
        complaint.history.append({
            "log_id": f"3002{self._log_seq:023d}", "operator": operator, "operate_time": rfc3339(self.state.now()),
            # The payer's own images are not shown to the merchant in the history (WeChat's FAQ), its own are.
            "operate_type": kind, "operate_details": details, "image_list": images or [],
            "complaint_media_list": {"media_type": "", "media_url": []}})

    def _notify(self, complaint: Complaint, event_type: str, action: str) -> Notification | None:
        """Make the notification (caller holds the lock), if a URL is registered."""
        if self.notify_url is None:
            return None
        state = self.state
        resource = {"complaint_id": complaint.complaint_id, "action_type": action}
        plaintext = compact_json(resource)
        nonce = make_nonce(12)
        notification_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "id": notification_id, "create_time": rfc3339(state.now()), "resource_type": "encrypt-resource",
            "event_type": event_type, "summary": EVENT_SUMMARY[event_type],
            # Complaint notifications carry an empty associated_data (wechatpay-v3.md §6b).
            "resource": {"original_type": "complaint", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": aead_encrypt(state.config.apiv3_key, nonce, "", plaintext),
                         "associated_data": "", "nonce": nonce},
        }
        notification = Notification(id=notification_id, event_type=event_type, subject=complaint.complaint_id,
                                    declared_url=self.notify_url, url=state.local_url(self.notify_url),
                                    envelope=envelope, body=compact_json(envelope), plaintext=plaintext)
        state.notifications[notification.id] = notification
        complaint.notification_ids.append(notification.id)
        return notification

    def _dispatch(self, notification: Notification | None) -> None:
        if notification is not None:
            self.state.courier.dispatch(notification)


def _digits(length: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(length))


def install(app: Flask) -> None:
    """Give the simulator its complaint desk and routes."""
    app.extensions[EXTENSION] = ComplaintDesk(app.extensions["wechatpay_sandbox"])
    app.register_blueprint(bp)


def desk() -> ComplaintDesk:
    found: ComplaintDesk = current_app.extensions[EXTENSION]
    return found


def _no_content() -> Response:
    return current_app.response_class(b"", status=204)


def _mchid_in(data: dict[str, Any]) -> None:
    mchid = data.get("complainted_mchid")
    if not isinstance(mchid, str) or not mchid:
        raise param_error("complainted_mchid", "此字段为必填项 (required)")
    if mchid != g.mchid:
        raise Refusal(403, "NO_AUTH", "被诉商户号与请求商户号不一致")


def _https_url(data: dict[str, Any]) -> str:
    url = data.get("url")
    if not isinstance(url, str) or not url or len(url) > 256:
        raise param_error("url", "此字段为必填项 (required)")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise param_error("url", "通知地址仅支持https，且不能带参数 (https only, no query)", url)
    return url


# --- the API ----------------------------------------------------------------------------------

NOTIFICATIONS = "/v3/merchant-service/complaint-notifications"
COMPLAINTS = "/v3/merchant-service/complaints-v2"


@bp.post(NOTIFICATIONS)
def create_notification_url() -> Response:
    url = _https_url(parse_json_object(request.get_data()))
    found = desk()
    with found.lock:
        if found.notify_url is not None:
            raise Refusal(400, "INVALID_REQUEST", "投诉通知回调地址已存在，请使用更新接口")
        found.notify_url = url
    return json_response({"mchid": g.mchid, "url": url})


@bp.get(NOTIFICATIONS)
def show_notification_url() -> Response:
    found = desk()
    with found.lock:
        url = found.notify_url
    if url is None:
        raise Refusal(404, "RESOURCE_NOT_EXISTS", "投诉通知回调地址不存在")
    return json_response({"mchid": g.mchid, "url": url})


@bp.put(NOTIFICATIONS)
def update_notification_url() -> Response:
    url = _https_url(parse_json_object(request.get_data()))
    found = desk()
    with found.lock:
        if found.notify_url is None:
            raise Refusal(404, "RESOURCE_NOT_EXISTS", "投诉通知回调地址不存在，请先创建")
        found.notify_url = url
    return json_response({"mchid": g.mchid, "url": url})


@bp.delete(NOTIFICATIONS)
def delete_notification_url() -> Response:
    found = desk()
    with found.lock:
        found.notify_url = None
    return _no_content()


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise param_error(name, f"取值范围[{low},{high}]", raw, location="query")
    return int(raw)


def _date_arg(name: str) -> dt.date:
    raw = request.args.get(name, "")
    try:
        if len(raw) == 10:
            return dt.date.fromisoformat(raw)
    except ValueError:
        pass
    raise param_error(name, "格式为yyyy-MM-DD (yyyy-MM-DD)", raw or None, location="query")


@bp.get(COMPLAINTS)
def list_complaints() -> Response:
    limit = _int_arg("limit", 10, 1, 50)
    offset = _int_arg("offset", 0, 0, 10**9)
    begin, end = _date_arg("begin_date"), _date_arg("end_date")
    if end < begin or (end - begin).days >= 30:
        raise param_error("end_date", "查询日期跨度不超过30天 (at most 30 days)", location="query")
    found = desk()
    every = found.in_days(begin, end)
    page: dict[str, Any] = {"data": [found.view(c) for c in every[offset:offset + limit]],
                            "limit": limit, "offset": offset}
    if offset == 0:
        page["total_count"] = len(every)
    return json_response(page)


@bp.get(f"{COMPLAINTS}/<complaint_id>")
def show_complaint(complaint_id: str) -> Response:
    found = desk()
    return json_response(found.view(found.get(complaint_id)))


@bp.get(f"{COMPLAINTS}/<complaint_id>/negotiation-historys")
def negotiation_history(complaint_id: str) -> Response:
    limit = _int_arg("limit", 10, 1, 300)
    offset = _int_arg("offset", 0, 0, 10**9)
    found = desk()
    complaint = found.get(complaint_id)
    with found.lock:
        entries = list(complaint.history)
    page: dict[str, Any] = {"data": entries[offset:offset + limit], "limit": limit, "offset": offset}
    if offset == 0:
        page["total_count"] = len(entries)
    return json_response(page)


@bp.post(f"{COMPLAINTS}/<complaint_id>/response")
def respond(complaint_id: str) -> Response:
    data = parse_json_object(request.get_data())
    _mchid_in(data)
    content = data.get("response_content")
    if not isinstance(content, str) or not content.strip():
        raise param_error("response_content", "此字段为必填项 (required)")
    if len(content) > 200:
        raise param_error("response_content", "回复内容限制200个字符以内 (at most 200 characters)")
    images = data.get("response_images", [])
    if not isinstance(images, list) or len(images) > 4:
        raise param_error("response_images", "最多上传4张图片凭证 (at most 4)")
    if not all(isinstance(m, str) for m in images):
        raise param_error("response_images", "media_id必须是字符串")
    desk().respond(complaint_id, content, images)
    return _no_content()


@bp.post("/v3/merchant-service/images/upload")
def upload_image() -> Response:
    meta_text = request.form.get("meta")
    upload = request.files.get("file")
    if meta_text is None or upload is None:
        raise param_error("file", "需要meta和file两部分 (meta and file are required)")
    try:
        meta = json.loads(meta_text)
    except ValueError:
        raise param_error("meta", "meta不是合法的JSON") from None
    data = upload.read()
    filename = meta.get("filename") if isinstance(meta, dict) else None
    if not isinstance(filename, str) or not filename.lower().endswith((".jpg", ".jpeg", ".png", ".bmp")):
        raise param_error("meta.filename", "文件名须以JPG、BMP、PNG为后缀")
    if meta.get("sha256") != hashlib.sha256(data).hexdigest():
        raise param_error("meta.sha256", "文件摘要与文件内容不一致 (sha256 does not match the file)")
    if len(data) > 2 * 1024 * 1024:
        raise Refusal(400, "INVALID_REQUEST", "图片内容过大")
    if image_kind(data) is None:
        raise Refusal(400, "INVALID_REQUEST", "图片格式不支持，仅支持JPG、BMP、PNG")
    return json_response({"media_id": desk().keep_image(data)})


@bp.get("/v3/merchant-service/images/<media_id>")
def download_image(media_id: str) -> Response:
    found = desk()
    with found.lock:
        data = found.images.get(media_id)
    if data is None:
        raise Refusal(404, "RESOURCE_NOT_EXISTS", "图片不存在")
    g.unsigned_response = True  # the image itself, like a bill file, is not signed
    return current_app.response_class(data, status=200, mimetype="image/" + (image_kind(data) or ".png")[1:])


@bp.post(f"{COMPLAINTS}/<complaint_id>/complete")
def complete(complaint_id: str) -> Response:
    _mchid_in(parse_json_object(request.get_data()))
    desk().complete(complaint_id)
    return _no_content()


@bp.post(f"{COMPLAINTS}/<complaint_id>/update-refund-progress")
def update_refund_progress(complaint_id: str) -> Response:
    data = parse_json_object(request.get_data())
    action = data.get("action")
    if action not in ("APPROVE", "REJECT"):
        raise param_error("action", "取值只能是APPROVE或REJECT", action)
    if action == "APPROVE":
        days = data.get("launch_refund_day")
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise param_error("launch_refund_day", "同意退款时必填 (required to approve)")
        text = f"同意退款，预计{days}个工作日内发起"
    else:
        reason = data.get("reject_reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
            raise param_error("reject_reason", "拒绝退款时必填，200个字符以内 (required to reject)")
        text = reason
    desk().refund_progress(complaint_id, action, text)
    return _no_content()


# --- the control API and the phone -----------------------------------------------------------

@bp.post("/control/complaints")
def control_file() -> Response:
    data = request.get_json(silent=True) or {}
    try:
        complaint = desk().file(str(data.get("out_trade_no", "")), str(data.get("detail", "")),
                                phone=str(data.get("phone", "13800138000")),
                                problem_type=str(data.get("problem_type", "OTHERS")),
                                apply_refund_amount=data.get("apply_refund_amount"),
                                images=tuple(base64.b64decode(str(i)) for i in data.get("images", [])))
    except (ValueError, Refusal) as exc:
        return json_response({"error": str(exc)}, 400)
    found = desk()
    return json_response({**found.view(complaint), "notified": bool(complaint.notification_ids)}, 201)


@bp.get("/control/complaints/<complaint_id>")
def control_show(complaint_id: str) -> Response:
    found = desk()
    try:
        complaint = found.get(complaint_id)
    except Refusal as exc:
        return json_response({"error": exc.message}, 404)
    with found.lock:
        history = list(complaint.history)
    return json_response({**found.view(complaint), "phone": complaint.phone, "history": history,
                          "notifications": list(complaint.notification_ids)})


@bp.post("/control/complaints/<complaint_id>/message")
def control_message(complaint_id: str) -> Response:
    text = str((request.get_json(silent=True) or {}).get("text", "")).strip()
    if not text:
        return json_response({"error": "text is required"}, 400)
    found = desk()
    try:
        complaint = found.user_message(complaint_id, text)
    except Refusal as exc:
        return json_response({"error": exc.message}, 404)
    return json_response(found.view(complaint))


@bp.post("/control/complaints/<complaint_id>/resend")
def control_resend(complaint_id: str) -> Response:
    try:
        notification = desk().resend(complaint_id)
    except (LookupError, Refusal) as exc:
        return json_response({"error": str(exc)}, 409)
    return json_response({"notification_id": notification.id}, 202)


@bp.route("/pay/<pr>/complain", methods=["GET", "POST"])
def phone_complain(pr: str) -> tuple[str, int]:
    """The phone's "投诉商家" page for a paid order: say what went wrong, optionally ask for the money back."""
    state: SandboxState = current_app.extensions["wechatpay_sandbox"]
    order = state.order_by_pr(pr)
    if order is None or not order.paid:
        abort(404)
    filed: Complaint | None = None
    error = None
    if request.method == "POST":
        wants_refund = request.form.get("refund") == "on"
        try:
            filed = desk().file(order.out_trade_no, request.form.get("detail", ""),
                                phone=request.form.get("phone", "").strip() or "13800138000",
                                problem_type="REFUND" if wants_refund else "OTHERS")
        except ValueError as exc:
            error = str(exc)
    return render_template("sandbox_complain.html", order=order, filed=filed, error=error, pr=pr,
                           config=state.config, amount=f"{order.total // 100}.{order.total % 100:02d}"), (
        400 if error else 200)
