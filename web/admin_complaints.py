"""The console's complaint pages under /admin/complaints: the list with deadlines, one complaint, and answering it."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from billing import complaints, refunds, reports

from . import current_shop
from .admin import _actor, bp


# A reply may carry one image (WeChat takes up to 2 MB); the rest of the console keeps the 64 KiB limit.
REPLY_UPLOAD_BYTES = 2 * 1024 * 1024 + 64 * 1024


@bp.before_app_request
def _room_for_a_reply_image() -> None:
    # Runs before the CSRF check reads the form, so the larger limit applies to that parse too.
    if request.method == "POST" and request.path.startswith("/admin/complaints/") and request.path.endswith("/reply"):
        request.max_content_length = REPLY_UPLOAD_BYTES


def _complaint(complaint_id: str) -> Any:
    found = complaints.find(complaint_id)
    if found is None:
        abort(404)
    return found


def _back(complaint_id: str) -> BaseResponse:
    return redirect(url_for("admin.complaint", complaint_id=complaint_id), 303)


@bp.get("/complaints")
def complaints_list() -> str:
    now = current_shop().now()
    return render_template("admin/complaints.html", rows=complaints.listing(), now=now,
                           due_soon=complaints.DUE_SOON, unanswered=complaints.unanswered,
                           notify_url=complaints.notification_url(current_shop()))


@bp.post("/complaints/register-url")
def complaints_register_url() -> BaseResponse:
    done = complaints.register_notification_url(current_shop(), actor=_actor(), ip=request.remote_addr)
    words = {"created": "已登记 registered", "updated": "已更新 updated", "unchanged": "已是此地址 already set"}
    flash(f"投诉通知地址 Complaint notification URL {done['url']}: {words[done['outcome']]}")
    return redirect(url_for("admin.complaints_list"), 303)


@bp.post("/complaints/sync")
def complaints_sync() -> BaseResponse:
    found = complaints.sync_now(current_shop())
    flash(f"已与微信支付同步：{found['listed']} 件，新 {found['found']} 件。 "
          f"Synced with WeChat Pay: {found['listed']} listed, {found['found']} new.")
    return redirect(url_for("admin.complaints_list"), 303)


@bp.get("/complaints/<complaint_id>")
def complaint(complaint_id: str) -> str:
    row = _complaint(complaint_id)
    shop = current_shop()
    # The payer's number is decrypted only here, for the creator who opened the complaint (audited).
    phone = complaints.payer_phone(shop, row, actor=_actor(), ip=request.remote_addr)
    order = row.order
    return render_template("admin/complaint.html", c=row, phone=phone, order=order, now=shop.now(),
                           image_urls=complaints.image_urls(row),
                           history=complaints.history_of(row), unanswered=complaints.unanswered(row),
                           license=reports.order_license(order) if order is not None else None,
                           refundable=refunds.refundable_fen(order) if order is not None else 0,
                           order_refunds=reports.order_refunds(order) if order is not None else [],
                           reply_chars=complaints.REPLY_CHARS)


@bp.post("/complaints/<complaint_id>/reply")
def complaint_reply(complaint_id: str) -> BaseResponse:
    row = _complaint(complaint_id)
    upload = request.files.get("image")
    image = upload.read() if upload is not None and upload.filename else None
    complaints.reply(current_shop(), row.complaint_id, request.form.get("text", ""), actor=_actor(),
                     ip=request.remote_addr, image=image or None)
    flash("已回复用户。 Your answer was sent to the payer.")
    return _back(row.complaint_id)


@bp.post("/complaints/<complaint_id>/complete")
def complaint_complete(complaint_id: str) -> BaseResponse:
    row = _complaint(complaint_id)
    complaints.complete(current_shop(), row.complaint_id, actor=_actor(), ip=request.remote_addr)
    flash("已标记处理完成。 Marked as handled; WeChat asks the payer whether it was.")
    return _back(row.complaint_id)


@bp.post("/complaints/<complaint_id>/refund")
def complaint_refund(complaint_id: str) -> BaseResponse:
    row = _complaint(complaint_id)
    amount = reports.parse_yuan(request.form.get("amount", ""))
    made = complaints.refund_from_complaint(current_shop(), row.complaint_id, amount_fen=amount,
                                            reason=request.form.get("reason", ""), actor=_actor(),
                                            ip=request.remote_addr)
    flash(f"退款 Refund {made.out_refund_no}: {reports.status_label(made.status)}")
    return _back(row.complaint_id)


@bp.post("/complaints/<complaint_id>/refund-answer")
def complaint_refund_answer(complaint_id: str) -> BaseResponse:
    row = _complaint(complaint_id)
    approve = request.form.get("action") == "approve"
    days_text = request.form.get("days", "").strip()
    days = int(days_text) if days_text.isdigit() and len(days_text) < 3 else None
    complaints.answer_refund_request(current_shop(), row.complaint_id, approve=approve, days=days,
                                     reason=request.form.get("reason", ""), actor=_actor(), ip=request.remote_addr)
    flash("已同意退款申请。 Refund request approved." if approve else "已拒绝退款申请。 Refund request rejected.")
    return _back(row.complaint_id)


@bp.post("/complaints/<complaint_id>/sync")
def complaint_sync(complaint_id: str) -> BaseResponse:
    row = _complaint(complaint_id)
    complaints.refresh_now(current_shop(), row.complaint_id)
    flash("已从微信支付刷新。 Fetched again from WeChat Pay.")
    return _back(row.complaint_id)


@bp.get("/complaints/<complaint_id>/images/<int:index>")
def complaint_image(complaint_id: str, index: int) -> Response:
    row = _complaint(complaint_id)
    data, mimetype = complaints.image(current_shop(), row.complaint_id, index)
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
