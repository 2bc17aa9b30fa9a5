"""The creator's console under /admin: sign-in, dashboard, orders, refunds, provisioning, courses, exports."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response as BaseResponse

from billing import CATALOGUE, BillingError, admin_users, console, licenses, refunds, reports
from billing.alipay_method import method_of
from billing import content, content_upload
from billing import courses as course_rules
from billing.courses import PLANS, all_courses, course_by_id, save_course
from billing.orders import qr_svg

from . import current_shop

if TYPE_CHECKING:  # names for type hints, as billing hands the rows out
    from billing.admin_users import AdminUser
    from billing.reports import Order

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf = CSRFProtect()
login_manager = LoginManager()
OPEN_ENDPOINTS = ("admin.login", "admin.login_totp", "admin.login_link", "admin.use_login_link")
TOTP_PENDING_SECONDS = 300
# A browser that completed a sign-in keeps this signed cookie: its later attempts are throttled on
# their own, so strangers' wrong passwords cannot lock the creator out (THREATS #65).
DEVICE_COOKIE = "lbpay_device"
DEVICE_DAYS = 365
# The random cookie a browser gets when it asks for a sign-in link: the link works in that browser only.
LINK_BROWSER_COOKIE = "lbpay_link_browser"
# Every method that may change something needs the CSRF token; HEAD is answered as GET is.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


class Admin(UserMixin):
    """The signed-in admin as flask-login sees it; the id carries the session epoch."""

    def __init__(self, user: AdminUser) -> None:
        self.user = user
        self.email = user.email

    def get_id(self) -> str:
        return f"{self.user.id}:{self.user.session_epoch}"


@login_manager.user_loader
def _load_admin(token: str) -> Admin | None:
    user_id, _, epoch = token.partition(":")
    if not user_id.isdigit() or not epoch.isdigit():
        return None
    user = admin_users.admin_by_id(int(user_id))
    # A cookie from before a logout or a password change names an old epoch: refuse it.
    if user is None or user.session_epoch != int(epoch):
        return None
    return Admin(user)


def init_app(app: Flask) -> None:
    """Attach the console: blueprint, sign-in, CSRF for every form, cookie settings, filters."""
    secure = app.config.get("SESSION_COOKIE_SECURE", False)
    app.config.setdefault("ADMIN_IDLE_MINUTES", 30)
    app.config.update(
        SESSION_COOKIE_NAME="__Host-lbpay" if secure else "lbpay_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        # Checked by our own hook below, so the notify endpoints and the token-authenticated API are exempt.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
    )
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.session_protection = "basic"
    app.register_blueprint(bp)
    app.jinja_env.filters["yuan"] = reports.yuan
    app.jinja_env.filters["shanghai"] = _shanghai
    app.jinja_env.filters["status_label"] = reports.status_label
    app.jinja_env.filters["method_label"] = _method_label
    app.jinja_env.globals["pay_names"] = pay_names
    app.jinja_env.globals["refund_words"] = reports.refund_detail_words

    @app.context_processor
    def _mode() -> dict[str, Any]:
        # Every console page says when it shows the simulator's play money.
        return {"sandbox_mode": _sandbox()}

    @app.before_request
    def _csrf_for_state_changes() -> None:
        # The API, the payment methods' notifications (signed) and the content provider never use the cookie.
        if request.method in SAFE_METHODS or request.path.startswith(("/api/", "/wechatpay/", "/alipay/", "/provider/")):
            return
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            abort(400)
        origin = request.headers.get("Origin")
        # Behind a proxy that rewrites Host, the public address is the one the browser names.
        ours = {request.host, urlsplit(app.config["PUBLIC_BASE_URL"]).netloc}
        if origin and origin != "null" and urlsplit(origin).netloc not in ours:
            abort(400)
        csrf.protect()


def _shanghai(value: dt.datetime | None, seconds: bool = True) -> str:
    if value is None:
        return ""
    return value.astimezone(reports.SHANGHAI).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")



def _sandbox() -> bool:
    """True when the shop runs against the WeChat Pay simulator: its figures are not money."""
    return bool(current_app.config.get("WECHATPAY_MODE") == "sandbox")


def _htmx() -> bool:
    """True for a request htmx made to update part of a page (the page itself is the fallback)."""
    return request.headers.get("HX-Request") == "true"


def _actor() -> str:
    return "admin:" + current_user.email


def _safe_next(target: str | None) -> str:
    """Only a path inside the console may be a redirect target."""
    if target and target.startswith("/admin") and not target.startswith("//") and "\\" not in target \
            and not urlsplit(target).netloc:
        return target
    return url_for("admin.dashboard")


@bp.before_request
def _require_admin() -> BaseResponse | None:
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")), 303)
    now = current_shop().now().timestamp()
    seen = session.get("seen")
    idle = current_app.config["ADMIN_IDLE_MINUTES"] * 60
    if not isinstance(seen, (int, float)) or now - seen > idle:
        logout_user()
        session.clear()
        flash("会话已过期，请重新登录。 Your session expired; please sign in again.")
        return redirect(url_for("admin.login"), 303)
    session["seen"] = now
    g.admin = current_user
    return None


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(BillingError)
def _billing_error(exc: BillingError) -> tuple[str, int]:
    return render_template("admin/problem.html", text=CATALOGUE[exc.code], detail=exc.detail), exc.status


# --- sign-in --------------------------------------------------------------------------------

def _throttled(exc: admin_users.Throttled) -> tuple[str, int, dict[str, str]]:
    until = current_shop().now() + dt.timedelta(seconds=exc.retry_after)
    page = render_template("admin/throttled.html", seconds=exc.retry_after, until=until)
    return page, 429, {"Retry-After": str(exc.retry_after)}


def _devices() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="lbpay admin device")


def _known_device(email: str) -> str | None:
    """The id of this browser when its signed cookie says it signed in to this account before."""
    try:
        claim = _devices().loads(request.cookies.get(DEVICE_COOKIE, ""))
    except BadSignature:
        return None
    if not isinstance(claim, dict) or claim.get("e") != admin_users.normalise_email(email):
        return None
    device = claim.get("d")
    return device if isinstance(device, str) and device else None


def _remember_device(response: BaseResponse, email: str, device: str | None) -> None:
    """Give this browser the signed cookie that makes it a known device of the account."""
    response.set_cookie(DEVICE_COOKIE, _devices().dumps({"e": email, "d": device or secrets.token_urlsafe(12)}),
                        max_age=DEVICE_DAYS * 86400, httponly=True, samesite="Lax", path="/admin",
                        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))


def _complete_login(user: AdminUser, target: str | None) -> BaseResponse:
    device = _known_device(user.email)
    # A fresh session at sign-in: nothing an attacker planted in the old one survives.
    session.clear()
    login_user(Admin(user))
    session.permanent = True
    session["seen"] = current_shop().now().timestamp()
    admin_users.signed_in(current_shop(), user, request.remote_addr, device)
    response = redirect(_safe_next(target), 303)
    _remember_device(response, user.email, device)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    target = request.values.get("next")
    if request.method != "POST":  # GET and HEAD alike
        return render_template("admin/login.html", next=target)
    email = request.form.get("email", "")[:254]
    password = request.form.get("password", "")[:1024]
    try:
        user = admin_users.check_password(current_shop(), email, password, request.remote_addr,
                                          _known_device(email))
    except admin_users.Throttled as exc:
        return _throttled(exc)
    if user is None:
        return render_template("admin/login.html", next=target, email=email,
                               error="邮箱或密码不正确。 Wrong e-mail or password."), 401
    if user.totp_secret:
        session.clear()
        session["totp_for"] = f"{user.id}:{user.session_epoch}"
        session["totp_since"] = current_shop().now().timestamp()
        session["totp_next"] = target
        return redirect(url_for("admin.login_totp"), 303)
    return _complete_login(user, target)


@bp.route("/login/totp", methods=["GET", "POST"])
def login_totp() -> Any:
    pending = session.get("totp_for")
    since = session.get("totp_since") or 0
    user = _load_admin(pending).user if isinstance(pending, str) and _load_admin(pending) else None
    if user is None or current_shop().now().timestamp() - since > TOTP_PENDING_SECONDS:
        session.clear()
        return redirect(url_for("admin.login"), 303)
    if request.method != "POST":  # GET and HEAD alike
        return render_template("admin/totp.html")
    try:
        ok = admin_users.check_totp(current_shop(), user, request.form.get("code", "")[:16], request.remote_addr,
                                    _known_device(user.email))
    except admin_users.Throttled as exc:
        return _throttled(exc)
    if not ok:
        return render_template("admin/totp.html", error="验证码不正确。 Wrong code."), 401
    return _complete_login(user, session.get("totp_next"))


@bp.route("/login/link", methods=["GET", "POST"])
def login_link() -> Any:
    """Ask for a mailed link that makes this browser known (the way in past a distributed lockout)."""
    if request.method != "POST":  # GET and HEAD alike
        return render_template("admin/login_link.html")
    browser = request.cookies.get(LINK_BROWSER_COOKIE, "")
    if not 20 <= len(browser) <= 64:
        browser = secrets.token_urlsafe(32)
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + url_for("admin.use_login_link", token="x")[:-1]
    try:
        admin_users.request_sign_in_link(current_shop(), request.form.get("email", "")[:254], request.remote_addr,
                                         browser, base)
    except admin_users.Throttled as exc:
        return _throttled(exc)
    response = current_app.make_response(render_template("admin/login_link.html", sent=True))
    response.set_cookie(LINK_BROWSER_COOKIE, browser, max_age=int(admin_users.LINK_LIFETIME.total_seconds()) + 300,
                        httponly=True, samesite="Lax", path="/admin",
                        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return response


LINK_REFUSAL_WORDS = {
    "unknown": ("这个链接无效。", "This link is not valid."),
    "used": ("这个链接已经用过，每个链接只能用一次。", "This link was used already; each link works once."),
    "expired": ("这个链接已过期（15 分钟内有效），请重新申请。", "This link has expired (it works for 15 minutes); ask for a new one."),
    "wrong_browser": ("请在申请链接的同一个浏览器中打开它。",
                      "Open this link in the browser that asked for it."),
}


@bp.route("/login/link/<token>", methods=["GET", "POST"])
def use_login_link(token: str) -> Any:
    """A mailed link: GET only asks to confirm (mail scanners open links), POST makes this browser known."""
    if request.method != "POST":
        return render_template("admin/login_link_use.html", token=token)
    try:
        user = admin_users.use_sign_in_link(current_shop(), token[:200], request.cookies.get(LINK_BROWSER_COOKIE),
                                            request.remote_addr)
    except admin_users.LinkRefused as exc:
        zh, en = LINK_REFUSAL_WORDS[exc.reason]
        return render_template("admin/login_link_use.html", token=None, reason=exc.reason, zh=zh, en=en), exc.status
    flash("这个浏览器现在可以登录了：请输入密码。 This browser is now known: sign in with your password.")
    response = redirect(url_for("admin.login"), 303)
    _remember_device(response, user.email, None)
    response.delete_cookie(LINK_BROWSER_COOKIE, path="/admin")
    return response


@bp.post("/logout")
def logout() -> BaseResponse:
    admin_users.sign_out_everywhere(current_shop(), current_user.user, request.remote_addr)
    logout_user()
    session.clear()
    return redirect(url_for("admin.login"), 303)


# --- dashboard and orders -------------------------------------------------------------------

@bp.get("/")
def dashboard() -> str:
    # Open alerts and unsettled bill differences join the flagged payments in the attention card.
    return render_template("admin/dashboard.html", d=reports.dashboard(current_shop().now(), sandbox=_sandbox()),
                           open_alerts=console.open_alerts(), alert_words=console.alert_words,
                           open_differences=[console.difference_words(row) for row in console.open_differences()])


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() and len(value) < 7 else default


@bp.get("/orders")
def orders() -> str:
    a = request.args
    f = reports.OrderFilter(q=a.get("q", ""), status=a.get("status", ""), course=a.get("course", ""),
                            since=reports.parse_day(a.get("since")), until=reports.parse_day(a.get("until")),
                            page=_int(a.get("page"), 1))
    rows, total = reports.search_orders(f)
    # Typing narrows the list in place (htmx); only a submitted search jumps to its one match.
    if len(rows) == 1 and total == 1 and f.q and f.page == 1 and not _htmx():
        return redirect(url_for("admin.order", public_id=rows[0].public_id), 303)  # type: ignore[return-value]
    pages = max(1, -(-total // reports.PAGE_SIZE))
    args = {k: v for k, v in a.items() if k != "page"}
    return render_template("admin/orders.html", rows=rows, total=total, f=f, pages=pages, args=args,
                           statuses=reports.STATUSES, courses=all_courses())


def _order(public_id: str) -> Order:
    order = reports.order_by_public_id(public_id)
    if order is None:
        abort(404)
    return order


def _method_label(out_trade_no: str | None) -> str:
    """The payment method of an order, as the console names it (its out_trade_no says which)."""
    return "支付宝 Alipay" if method_of(out_trade_no or "") == "alipay" else "微信支付 WeChat Pay"


def pay_names(out_trade_no: str | None) -> dict[str, str]:
    """How the console names an order's payment service in a sentence: full and short, Chinese and English."""
    if method_of(out_trade_no or "") == "alipay":
        return {"method": "alipay", "zh": "支付宝", "en": "Alipay", "zh_short": "支付宝", "en_short": "Alipay"}
    return {"method": "wechat", "zh": "微信支付", "en": "WeChat Pay", "zh_short": "微信", "en_short": "WeChat"}


@bp.get("/orders/<public_id>")
def order(public_id: str, wechat: dict[str, Any] | None = None) -> str:
    with reports.one_moment():  # the order, its refunds and its license as of one commit, never half of one
        o = _order(public_id)
        made = reports.order_refunds(o)
        # After a refund the page says how it stands, and (polled while WeChat settles it) says so again.
        news = next((r for r in made if r.out_refund_no == request.args.get("refund")), None)
        return render_template(
            "admin/order.html", o=o, license=reports.order_license(o), wechat=wechat, now=current_shop().now(),
            refunds=made, news=news,
            refundable=refunds.refundable_fen(o), timeline=reports.timeline(o), comp=licenses.is_comp(o))


@bp.post("/orders/<public_id>/check")
def check_with_wechat(public_id: str) -> str:
    o = _order(public_id)
    return order(public_id, wechat=licenses.ask_wechat(current_shop(), o))


@bp.post("/orders/<public_id>/mark-paid")
def mark_paid(public_id: str) -> BaseResponse:
    o = _order(public_id)
    result = licenses.mark_paid(current_shop(), o, reason=request.form.get("reason", ""), actor=_actor(),
                                ip=request.remote_addr)
    names = pay_names(o.out_trade_no)
    flash(f"{names['zh']}确认已付款。 {names['en']} confirms the payment: {result}.")
    return redirect(url_for("admin.order", public_id=public_id), 303)


@bp.post("/orders/<public_id>/refund")
def refund(public_id: str) -> BaseResponse:
    o = _order(public_id)
    amount = reports.parse_yuan(request.form.get("amount", ""))
    if request.form.get("ask") == "1":  # no JavaScript, so no confirm(): the server asks, once
        return render_template("admin/confirm_refund.html", o=o, amount=amount,  # type: ignore[return-value]
                               reason=request.form.get("reason", ""), revoke=request.form.get("revoke") == "on",
                               left=refunds.refundable_fen(o))
    made = refunds.request_refund(current_shop(), o, amount_fen=amount, reason=request.form.get("reason", ""),
                                  revoke_license=request.form.get("revoke") == "on", actor=_actor(),
                                  ip=request.remote_addr)
    # Not a flash: the order page shows this refund's state, refreshed with the rest until WeChat settles it.
    return redirect(url_for("admin.order", public_id=public_id, refund=made.out_refund_no), 303)


@bp.post("/refunds/<out_refund_no>/sync")
def sync_refund(out_refund_no: str) -> BaseResponse:
    made = reports.refund_by_number(out_refund_no)
    if made is None:
        abort(404)
    refunds.check_refund(current_shop(), made)
    return redirect(url_for("admin.order", public_id=made.order.public_id, refund=out_refund_no), 303)


@bp.post("/refunds/<out_refund_no>/apply-abnormal")
def apply_abnormal_refund(out_refund_no: str) -> BaseResponse:
    made = reports.refund_by_number(out_refund_no)
    if made is None:
        abort(404)
    outcome = refunds.apply_abnormal_refund(
        current_shop(), made, kind=request.form.get("type", ""), actor=_actor(), ip=request.remote_addr,
        bank_type=request.form.get("bank_type"), bank_account=request.form.get("bank_account"),
        real_name=request.form.get("real_name"))
    flash(f"退款 Refund {out_refund_no}: {outcome}")
    return redirect(url_for("admin.order", public_id=made.order.public_id), 303)


@bp.post("/orders/<public_id>/revoke")
def revoke(public_id: str) -> BaseResponse:
    licenses.revoke_license(current_shop(), _order(public_id), reason=request.form.get("reason", ""), actor=_actor(),
                            ip=request.remote_addr)
    flash("许可证已吊销。 License revoked.")
    return redirect(url_for("admin.order", public_id=public_id), 303)


@bp.post("/orders/<public_id>/reinstate")
def reinstate(public_id: str) -> BaseResponse:
    licenses.reinstate_license(current_shop(), _order(public_id), reason=request.form.get("reason", ""),
                               actor=_actor(), ip=request.remote_addr)
    flash("许可证已恢复。 License reinstated.")
    return redirect(url_for("admin.order", public_id=public_id), 303)


@bp.post("/orders/<public_id>/resend")
def resend(public_id: str) -> BaseResponse:
    licenses.resend_license_mail(current_shop(), _order(public_id), actor=_actor(), ip=request.remote_addr)
    flash("许可证邮件已加入发送队列。 The license mail is queued.")
    return redirect(url_for("admin.order", public_id=public_id), 303)


@bp.route("/comp", methods=["GET", "POST"])
def comp() -> Any:
    courses = all_courses()
    if request.method != "POST":  # GET and HEAD alike
        return render_template("admin/comp.html", courses=courses)
    email = request.form.get("email", "").strip() or None
    made = licenses.comp_license(current_shop(), course_id=request.form.get("course", ""), email=email,
                                 reason=request.form.get("reason", ""), actor=_actor(), ip=request.remote_addr)
    flash("已赠送许可证。 License granted without payment.")
    return redirect(url_for("admin.order", public_id=made.public_id), 303)


# --- courses --------------------------------------------------------------------------------

@bp.get("/courses")
def courses() -> str:
    return render_template("admin/courses.html", courses=all_courses(), plan_words=course_rules.PLAN_WORDS)


@bp.route("/courses/new", methods=["GET", "POST"])
@bp.route("/courses/<course_id>/edit", methods=["GET", "POST"])
def course_form(course_id: str | None = None) -> Any:
    course = course_by_id(course_id) if course_id else None
    if course_id and course is None:
        abort(404)
    details = course_rules.details_of(course.id) if course else None
    if request.method != "POST":  # GET and HEAD alike
        return _course_page(course, details, {})
    form = request.form
    wrong: dict[str, str] = {}
    period_text = form.get("period_days", "").strip()
    period = int(period_text) if period_text.isdigit() and len(period_text) < 7 else None
    try:
        price = reports.parse_yuan(form.get("price", ""))
    except BillingError:
        price = None
    limit_text = form.get("download_limit", "").strip()
    limit = int(limit_text) if limit_text.isdigit() and len(limit_text) < 8 else None
    if limit_text and (limit is None or not 1 <= limit <= content.MAX_DOWNLOAD_LIMIT):
        wrong["download_limit"] = "download_limit"
    upload = request.files.get("cover")
    cover = upload.read() if upload is not None and upload.filename else None
    new_id = course.id if course else form.get("id", "").strip()
    wrong.update(course_rules.check_course(course_id=new_id, title=form.get("title", ""), price_fen=price,
                                      plan=form.get("plan", "one_time"), period_days=period))
    if period_text and period is None:
        wrong["period_days"] = "period_range"
    wrong.update(course_rules.check_details(form.get("description", ""), cover))
    if wrong:
        return _course_page(course, details, wrong, status=400)
    saved = save_course(current_shop(), course_id=new_id, title=form.get("title", ""), price_fen=price,
                        plan=form.get("plan", "one_time"), period_days=period,
                        active=form.get("active") == "on", actor=_actor(), ip=request.remote_addr)
    course_rules.save_details(current_shop(), saved.id, description=form.get("description", ""), cover=cover,
                         drop_cover=form.get("drop_cover") == "on", actor=_actor(), ip=request.remote_addr)
    content.set_download_limit(current_shop(), saved.id, limit, actor=_actor())
    flash(f"已保存课程 {saved.id}。 Course saved.")
    return redirect(url_for("admin.courses"), 303)


def _course_page(course: Any, details: Any, wrong: dict[str, str], status: int = 200,
                 refused: Any = None) -> tuple[str, int]:
    """The editor, with each mistake under its field and what was typed kept; below it the course's files."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return render_template("admin/course_form.html", course=course, details=details, plans=PLANS,
                           plan_words=course_rules.PLAN_WORDS, problems={k: course_rules.FIELD_WORDS[v] for k, v in wrong.items()},
                           typed=request.form if request.method == "POST" and refused is None else None,
                           buy_url=f"{base}/buy/{course.id}" if course else "",
                           buy_qr=qr_svg(f"{base}/buy/{course.id}") if course else "",
                           files=content_upload.tree(current_shop(), course.id) if course else None,
                           refused=refused, upload_max_mb=content_upload.UPLOAD_MAX_BYTES // content_upload.MB), status


# --- exports --------------------------------------------------------------------------------

@bp.get("/export")
def export() -> str:
    return render_template("admin/export.html")


def _csv_response(data: bytes, name: str) -> Response:
    return Response(data, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Content-Type": "text/csv; charset=utf-8"})


def _export_name(what: str, since: dt.date | None, until: dt.date | None) -> str:
    # Sandbox exports are labelled in their very name: play money never lands in the books unnoticed.
    return f"{'sandbox-' if _sandbox() else ''}{what}-{since or 'all'}-{until or 'now'}.csv"


@bp.get("/export/orders.csv")
def export_orders() -> Response:
    since, until = reports.parse_day(request.args.get("since")), reports.parse_day(request.args.get("until"))
    return _csv_response(reports.orders_csv(since, until, sandbox=_sandbox()), _export_name("orders", since, until))


@bp.get("/export/refunds.csv")
def export_refunds() -> Response:
    since, until = reports.parse_day(request.args.get("since")), reports.parse_day(request.args.get("until"))
    return _csv_response(reports.refunds_csv(since, until, sandbox=_sandbox()), _export_name("refunds", since, until))


from . import admin_codes  # noqa: E402,F401  (its routes live on this blueprint: sign-in and CSRF apply)
from . import admin_webhooks  # noqa: E402,F401  (the webhook pages, on this blueprint too)
from . import admin_embed  # noqa: E402,F401  (the buy button page, on this blueprint too)
from . import admin_complaints  # noqa: E402,F401  (likewise)
from . import admin_content  # noqa: E402,F401  (the course editor's files, on this blueprint too)
