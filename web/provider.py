"""The extension's course content provider under /provider: catalogue, structure, license state, files."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_file

from billing import content
from billing.content import ContentError

from . import current_shop

bp = Blueprint("provider", __name__, url_prefix="/provider")


def _error(exc: ContentError) -> Response:
    response = jsonify(exc.body())
    response.status_code = exc.status
    if "retry_after" in exc.extra:
        response.headers["Retry-After"] = str(exc.extra["retry_after"])
    return response


@bp.errorhandler(ContentError)
def _content_error(exc: ContentError) -> Response:
    return _error(exc)


def _content_dir() -> Path:
    return current_shop().config.content_dir


def _bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _course_header(course_id: str | None) -> str | None:
    """The X-Course-Id the extension sends; it must agree with the course in the path when both are given."""
    header = request.headers.get("X-Course-Id", "").strip() or None
    if header is not None and course_id is not None and header != course_id:
        raise ContentError("bad_request", "X-Course-Id does not match the course in the path")
    return header or course_id


@bp.get("/health")
def health() -> Response:
    return jsonify(status="ok", service="lbpay-provider")


@bp.get("/catalog")
def catalog() -> Response:
    return jsonify(content.catalog())


@bp.get("/catalog/search")
def search() -> Response:
    return jsonify(content.catalog(request.args.get("q", "")))


@bp.get("/courses/<course_id>/structure")
def structure(course_id: str) -> Response:
    return jsonify(content.structure_for(current_shop(), request.remote_addr, course_id))


@bp.get("/licenses")
def license_state_by_header() -> Response:
    """The same answer as below, the key in ``Authorization: Bearer`` or ``X-License-Key``, never in a URL."""
    named = request.headers.get("X-License-Key", "").strip() or None
    bearer = _bearer()
    if named is not None and bearer is not None and named != bearer:
        # Two credentials that disagree authenticate nothing: a 401, as for a key that does not verify.
        raise ContentError("invalid_license", "Authorization and X-License-Key name different keys")
    key = named or bearer
    if key is None:
        raise ContentError("no_license", "send Authorization: Bearer <license key> or X-License-Key")
    return jsonify(content.license_report(current_shop(), key, _course_header(None)))


@bp.get("/licenses/<path:key>")
def license_state(key: str) -> Response:
    return jsonify(content.license_report(current_shop(), key, _course_header(None)))


@bp.get("/content/<course_id>/<path:path>")
def serve(course_id: str, path: str) -> Response:
    _course_header(course_id)
    target, free = content.resolve_file(_content_dir(), course_id, path)
    grant = None if free else content.grant_for(current_shop(), _bearer(), course_id)
    response = send_file(target, conditional=True, etag=True, max_age=0)
    if grant is not None:
        response.headers["Cache-Control"] = "private, no-cache"
        if content.started_download(response.status_code, request.method):
            try:
                content.count_download(current_shop(), grant)
            except ContentError as exc:
                response.close()
                return _error(exc)
    return response


@bp.get("/", defaults={"rest": ""})
@bp.get("/<path:rest>")
def unknown(rest: str) -> Response:
    """Any other path under /provider answers in JSON too, never the HTML error page."""
    raise ContentError("not_found", "no such provider path")
