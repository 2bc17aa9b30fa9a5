"""The public pages: the course list and the purchase page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from billing import CATALOGUE, error_body
from billing.courses import course_for_sale, courses_for_sale
from billing.orders import COURSE_ID

bp = Blueprint("pages", __name__)

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_PAGE_HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                 ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"))
_API_HEADERS = _PAGE_HEADERS + (("Cache-Control", "no-store"),)


@bp.get("/")
def index() -> str:
    courses = courses_for_sale()
    return render_template("index.html", courses=courses)


@bp.get("/buy/<course_id>")
def buy(course_id: str) -> str | tuple[str, int]:
    course = None
    if COURSE_ID.match(course_id):
        course = course_for_sale(course_id)
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
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _STATUS_CODES.get(status, "bad_request")
        if request.path.startswith("/wechatpay/"):
            response = jsonify(code="FAIL", message=exc.name)
        elif request.path.startswith("/api/"):
            response = jsonify(error_body(code))
        else:
            response = Response(render_template("error.html", status=status, text=CATALOGUE[code]),
                                mimetype="text/html")
        response.status_code = status
        # The exception's own headers say what the body cannot: Allow on a 405 (RFC 9110), and so on.
        response.headers.extend([(name, value) for name, value in exc.get_headers()
                                 if name.lower() != "content-type"])
        return response

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
        headers = response.headers
        present = {name.lower() for name in headers.keys()}  # one pass, not one scan per header
        extra = _API_HEADERS if request.path.startswith("/api/") else _PAGE_HEADERS
        headers.extend([(name, value) for name, value in extra if name.lower() not in present])
        return response


class _NoSessionForMachines(SecureCookieSessionInterface):
    """The extension's API and WeChat's notify URLs are token-authenticated: no session cookie to read."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path.startswith(("/api/", "/wechatpay/")):
            return self.null_session_class()
        return super().open_session(app, request)


def use_sessions_only_for_people(app: Flask) -> None:
    """Skip reading a session cookie on machine-to-machine requests."""
    app.session_interface = _NoSessionForMachines()
