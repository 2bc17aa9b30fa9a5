"""The public pages: the course list and the purchase page."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from billing import CATALOGUE, error_body
from billing.orders import COURSE_ID
from models import Course

bp = Blueprint("pages", __name__)

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@bp.get("/")
def index() -> str:
    courses = Course.select().where(Course.active == True).order_by(Course.id)  # noqa: E712
    return render_template("index.html", courses=courses)


@bp.get("/buy/<course_id>")
def buy(course_id: str) -> str | tuple[str, int]:
    course = None
    if COURSE_ID.match(course_id):
        course = Course.get_or_none((Course.id == course_id) & (Course.active == True))  # noqa: E712
    if course is None:
        return render_template("error.html", status=404, text=CATALOGUE["course_not_found"]), 404
    sandbox = current_app.config["WECHATPAY_MODE"] == "sandbox"
    # Sandbox only: ?demo_error=<code> shows how a catalogued error reads on this page (tests, demos).
    demo_error = request.args.get("demo_error") if sandbox else None
    return render_template("buy.html", course=course, sandbox=sandbox,
                           demo_error=demo_error if demo_error in CATALOGUE else None,
                           errors={code: {"zh": t.message_zh, "en": t.message_en, "action": t.action}
                                   for code, t in CATALOGUE.items()})


_STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "bad_request",
                 413: "payload_too_large", 429: "rate_limited", 500: "internal_error",
                 503: "service_busy"}


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/wechatpay/"))


def register_error_pages(app: Flask) -> None:
    """Answer errors as JSON under /api and for WeChat, as a bilingual page elsewhere."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
        status = exc.code or 500
        if request.path.startswith("/wechatpay/"):
            return jsonify(code="FAIL", message=exc.name), status
        code = _STATUS_CODES.get(status, "bad_request")
        if request.path.startswith("/api/"):
            return jsonify(error_body(code)), status
        return render_template("error.html", status=status, text=CATALOGUE[code]), status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response | str, int]:
        from peewee import OperationalError

        if isinstance(exc, OperationalError) and "locked" in str(exc):
            app.logger.warning("database busy: %s", exc)
            code, status = "service_busy", 503
        else:
            app.logger.exception("unhandled error on %s", request.path)
            code, status = "internal_error", 500
        if request.path.startswith("/wechatpay/"):
            return jsonify(code="FAIL", message=code), status
        if request.path.startswith("/api/"):
            response = jsonify(error_body(code))
            if status == 503:
                response.headers["Retry-After"] = "2"
            return response, status
        return render_template("error.html", status=status, text=CATALOGUE[code]), status

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
