"""The course editor's content: the tree a course serves under /provider, and uploads into it."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from billing import CATALOGUE, content_upload
from billing.courses import course_by_id, details_of
from billing.orders import qr_svg

from . import current_shop
from .admin import _actor, _course_page, bp

UPLOAD_ENDPOINT = "admin.upload_content"


@bp.before_app_request
def _room_for_course_files() -> None:
    # Before the CSRF check reads the form, so the larger limit applies to that parse too.
    if request.method == "POST" and request.endpoint == UPLOAD_ENDPOINT:
        request.max_content_length = content_upload.UPLOAD_MAX_BYTES + 64 * 1024


@bp.post("/courses/<course_id>/content")
def upload_content(course_id: str) -> Any:
    """A zip that becomes the course's files, or files added to one of its folders; the editor says how it went."""
    course = course_by_id(course_id)
    if course is None:
        abort(404)
    incoming = [content_upload.Incoming(f.filename or "", f.stream) for f in request.files.getlist("files")
                if f.filename]
    try:
        done = content_upload.upload(current_shop(), course.id, request.form.get("mode", ""), incoming,
                                     folder=request.form.get("folder", "")[:300], actor=_actor(),
                                     ip=request.remote_addr)
    except content_upload.UploadRefused as refused:
        return _course_page(course, details_of(course.id), {}, status=refused.status, refused=refused)
    what = ("已用 zip 替换课程内容", "The zip replaced the course's files") if done.mode == "zip" else \
        ("已添加文件", "Files added")
    flash(f"{what[0]}：{done.files} 个文件。 {what[1]}: {done.files} file(s).")
    return redirect(url_for("admin.course_form", course_id=course.id) + "#course-content", 303)


@bp.get("/courses/<course_id>/buy-qr.svg")
def buy_qr(course_id: str) -> Response:
    """The buy page's QR code as a file, for a poster or a slide (SVG: sharp at any print size)."""
    course = course_by_id(course_id)
    if course is None:
        abort(404)
    url = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + f"/buy/{course.id}"
    return Response(qr_svg(url), mimetype="image/svg+xml",
                    headers={"Content-Disposition": f'attachment; filename="buy-{course.id}.svg"'})


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Any:
    """An upload larger than allowed is refused before it is read: on the editor, in words, with its audit event."""
    course = course_by_id(str((request.view_args or {}).get("course_id", ""))[:64]) \
        if request.endpoint == UPLOAD_ENDPOINT and current_user.is_authenticated else None
    if course is None:
        return render_template("error.html", status=413, text=CATALOGUE["payload_too_large"]), 413
    refused = content_upload.refuse_too_large(current_shop(), course.id, actor=_actor(), ip=request.remote_addr)
    return _course_page(course, details_of(course.id), {}, status=413, refused=refused)

