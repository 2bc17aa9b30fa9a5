"""The public pages: the course list and the purchase page."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from billing import CATALOGUE, BillingError, discounts, error_body, learners, receipts
from billing.alipay_method import offered_methods
from billing.content import ContentError
from billing.courses import course_for_sale, courses_for_sale, details_of, PLAN_WORDS
from billing.courses import cover_of as course_cover
from billing.orders import COURSE_ID, cancel_order, email_notice, order_for_token, order_view, place_order
from billing.reconcile import check_on_poll

from . import current_shop
from .api import _code_guard as code_guard

bp = Blueprint("pages", __name__)

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
PAGE_HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"))
API_HEADERS = PAGE_HEADERS + (("Cache-Control", "no-store"),)


@bp.get("/")
def index() -> str:
    courses = courses_for_sale()
    return render_template("index.html", courses=courses)


def _course_or_404(course_id: str) -> Any:
    course = course_for_sale(course_id) if COURSE_ID.match(course_id) else None
    if course is None:
        raise BillingError("course_not_found")
    return course


def _sandbox() -> bool:
    return bool(current_app.config["WECHATPAY_MODE"] == "sandbox")


@bp.errorhandler(BillingError)
def _billing_error(exc: BillingError) -> tuple[str, int]:
    """A refusal on the pages without JavaScript: the catalogue's words, the server's reason, the way on."""
    course = course_for_sale(request.view_args["course_id"]) if request.view_args and \
        COURSE_ID.match(str(request.view_args.get("course_id", ""))) else None
    if course is None or exc.code == "course_not_found":
        return render_template("error.html", status=exc.status, text=CATALOGUE[exc.code], detail=exc.detail), exc.status
    return render_template("buy_order.html", course=course, problem=CATALOGUE[exc.code], code=exc.code,
                           detail=exc.detail, license=(exc.extra or {}).get("license")), exc.status


@bp.get("/buy/<course_id>")
def buy(course_id: str) -> str | tuple[str, int]:
    course = _course_or_404(course_id)
    sandbox = _sandbox()
    # Sandbox only: ?demo_error=<code> shows how a catalogued error reads on this page (tests, demos).
    demo_error = request.args.get("demo_error") if sandbox else None
    return _buy_page(course, demo_error=demo_error if demo_error in CATALOGUE else None)


def _buy_page(course: Any, *, demo_error: str | None = None, code_problem: dict[str, str] | None = None,
              entered: dict[str, str] | None = None, embed: bool = False) -> str:
    """The purchase page: the price a buyer without a code pays now (a launch price shows the list price struck)."""
    return render_template("buy.html", course=course, sandbox=_sandbox(), demo_error=demo_error, embed=embed,
                           methods=offered_methods(current_shop()), seller=receipts.seller(current_shop()),
                           details=details_of(course.id), plan_words=PLAN_WORDS,
                           price=discounts.price_for(course, None, None, None, current_shop().now()),
                           code_problem=code_problem, entered=entered,
                           errors={code: {"zh": t.message_zh, "en": t.message_en, "action": t.action}
                                   for code, t in CATALOGUE.items()})


@bp.get("/courses/<course_id>/cover")
def cover(course_id: str) -> Response:
    """A course's cover image, as the creator uploaded it (its type read from its bytes, never trusted)."""
    found = course_cover(course_id) if COURSE_ID.match(course_id) else None
    if found is None:
        abort(404)
    data, kind = found
    response = Response(data, mimetype=kind)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# --- the same purchase without JavaScript: forms, a session cookie holding the tokens, meta refresh ---

_KEEP_ORDERS = 5


def _order_tokens() -> dict[str, str]:
    tokens = session.get("orders")
    return dict(tokens) if isinstance(tokens, dict) else {}


# A code refused on the page without JavaScript: the form again, filled in, the reason beside the field.
_CODE_REFUSALS = ("code_not_found", "code_not_started", "code_expired", "code_exhausted", "code_wrong_course",
                  "code_already_used", "price_changed")


@bp.post("/buy/<course_id>")
def buy_start(course_id: str) -> BaseResponse | tuple[str, int]:
    course = _course_or_404(course_id)
    email = (request.form.get("email") or "").strip() or None
    code = (request.form.get("code") or "").strip() or None
    try:
        placed = code_guard(code is not None, lambda: place_order(
            current_shop(), course_id=course.id, email=email, buyer_token=session.get("buyer_token"),
            ip=request.remote_addr, code=code, method=request.form.get("method") or "wechat"))
    except BillingError as exc:
        if exc.code not in _CODE_REFUSALS:
            raise
        words = CATALOGUE[exc.code]
        problem = {"code": exc.code, "message_zh": words.message_zh, "message_en": words.message_en}
        return _buy_page(course, code_problem=problem, entered={"email": email or "", "code": code or ""}), exc.status
    tokens = _order_tokens()
    tokens[placed.order.public_id] = placed.order_token
    session["orders"] = dict(list(tokens.items())[-_KEEP_ORDERS:])
    session["buyer_token"] = placed.buyer_token
    if email:
        session["mailed_to"] = email
    else:
        session.pop("mailed_to", None)
    return redirect(url_for("pages.buy_order", course_id=course.id, order_id=placed.order.public_id), 303)


@bp.get("/buy/<course_id>/orders/<order_id>")
def buy_order(course_id: str, order_id: str) -> str:
    course = _course_or_404(course_id)
    order = check_on_poll(current_shop(), order_for_token(order_id, _order_tokens().get(order_id)))
    view = order_view(current_shop(), order)
    qr = order.qr_svg if view["status"] == "pending" else None
    mailed_to = session.get("mailed_to")
    notice = email_notice(course.plan, mailed_to) if view["status"] == "pending" else None
    paid = receipts.receipt(current_shop(), order) if view["license"] else None
    return render_template("buy_order.html", course=course, view=view, qr_svg=qr, sandbox=_sandbox(),
                           mailed_to=mailed_to, license=view["license"], email_notice=notice, receipt=paid,
                           receipt_token=receipts.receipt_token(current_shop(), order) if paid else "")


@bp.post("/buy/<course_id>/orders/<order_id>/cancel")
def buy_cancel(course_id: str, order_id: str) -> BaseResponse:
    _course_or_404(course_id)
    order = order_for_token(order_id, _order_tokens().get(order_id))
    cancel_order(current_shop(), order, ip=request.remote_addr)
    return redirect(url_for("pages.buy_order", course_id=course_id, order_id=order_id), 303)


@bp.post("/buy/<course_id>/resend")
def buy_resend(course_id: str) -> tuple[str, int]:
    course = _course_or_404(course_id)
    learners.request_resend(current_shop(), request.form.get("email", ""), ip=request.remote_addr)
    # The same answer whether or not the address bought anything (the API's privacy rule).
    return render_template("buy_order.html", course=course, resent=True), 202


@bp.app_template_filter("b64")
def _b64(text: str) -> str:
    """Base64 of a text, for a data: URI (the QR code as an image a phone can save)."""
    return base64.b64encode(text.encode()).decode()


@bp.app_template_test("lifetime")
def _lifetime(license: dict[str, Any]) -> bool:
    """A license bought for good: a one-time plan, or a key that ends a century on (shop.LIFETIME)."""
    if license.get("plan") == "one_time":
        return True
    ends = license.get("expires_at")
    if not ends:
        return False
    at = dt.datetime.fromisoformat(str(ends).replace("Z", "+00:00"))
    return at - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=50 * 365)


@bp.app_template_filter("shanghai_iso")
def _shanghai_iso(value: str | None) -> str:
    """An API time (RFC 3339, UTC) as a learner in China reads it."""
    if not value:
        return ""
    at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")


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
        elif request.path.startswith("/provider/"):  # the provider's own shape: {"error": {"code", "message"}}
            refusal = ContentError("not_found" if status == 404 else "bad_request", exc.name.lower())
            response = jsonify(refusal.body())
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

        # SQLite's "database is locked", PostgreSQL's "canceling statement due to lock timeout".
        if isinstance(exc, OperationalError) and ("locked" in str(exc) or "lock timeout" in str(exc)):
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
        extra: tuple[tuple[str, str], ...] = API_HEADERS if request.path.startswith("/api/") else PAGE_HEADERS
        if request.endpoint == "pages.buy_embed":  # framed by the creator's sites: its CSP says which (embed.py)
            extra = tuple(h for h in extra if h[0] != "X-Frame-Options")
        headers.extend([(name, value) for name, value in extra if name.lower() not in present])
        return response


# Requests made by machines, authenticated by a token or a signature, never by a session cookie:
# the extension's API and WeChat's notify URLs.
MACHINE_PATHS = ("/api/", "/wechatpay/")
# Request hooks that serve people's pages only: the console's upload limits and CSRF checks and
# flask-login's remember-me cookie. Each is a no-op on a machine's request (its form, its cookie or
# its path never matches), yet Flask would call every one on every status poll and notification.
PEOPLE_HOOKS = frozenset({"_room_for_a_file", "_room_for_a_reply_image", "_csrf_for_state_changes", "csrf_protect",
                          "_update_remember_cookie"})


def people_hooks_only_for_people(app: Flask) -> None:
    """Fold the app-wide hooks in ``PEOPLE_HOOKS`` into one that a machine's request skips on its path.

    Call once, after every hook is registered. The hooks keep their order among the others (they
    stand where the first of them stood), and run exactly as before on every other request.
    """
    _fold_people(app.before_request_funcs.get(None, []), lambda people: _before_for_people(app, people))
    _fold_people(app.after_request_funcs.get(None, []), lambda people: _after_for_people(app, people))


def _fold_people(hooks: list[Any], fold: Any) -> None:
    people = [f for f in hooks if getattr(f, "__name__", "") in PEOPLE_HOOKS]
    if people:
        at = hooks.index(people[0])
        hooks[:] = [f for f in hooks if f not in people]
        hooks.insert(at, fold(people))


def _before_for_people(app: Flask, people: list[Any]) -> Any:
    def before_for_people() -> Any:
        if request.path.startswith(MACHINE_PATHS):
            return None
        for hook in people:
            answer = app.ensure_sync(hook)()
            if answer is not None:
                return answer
        return None
    return before_for_people


def _after_for_people(app: Flask, people: list[Any]) -> Any:
    def after_for_people(response: Response) -> Response:
        if request.path.startswith(MACHINE_PATHS):
            return response
        for hook in reversed(people):  # Flask's order: the last registered first
            response = app.ensure_sync(hook)(response)
        return response
    return after_for_people


class _NoSessionForMachines(SecureCookieSessionInterface):
    """The extension's API and WeChat's notify URLs are token-authenticated: no session cookie to read."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path.startswith(MACHINE_PATHS):
            return self.null_session_class()
        return super().open_session(app, request)


def use_sessions_only_for_people(app: Flask) -> None:
    """Skip reading a session cookie on machine-to-machine requests."""
    app.session_interface = _NoSessionForMachines()


from . import embed as _buy_button_routes  # noqa: E402,F401  (the buy button's framed page, on this blueprint)
