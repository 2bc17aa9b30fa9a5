"""The console pages that say what needs the creator: alerts, bill differences to settle, the audit trail, customers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from billing import bill_actions, console, receipts, reports
from billing.courses import COVER_MAX

from . import admin, current_shop

bp = Blueprint("console", __name__, url_prefix="/admin")
# The console's own sign-in and idle checks, its no-store answers and its problem pages.
bp.before_request(admin._require_admin)
bp.after_request(admin._no_store)
bp.register_error_handler(admin.BillingError, admin._billing_error)

ALERT_STATES = ("open", "resolved", "all")


def _id(value: str) -> int:
    if not value.isdigit() or len(value) > 12:
        abort(404)
    return int(value)


def _back(default: str) -> str:
    return admin._safe_next(request.form.get("next") or default)


@bp.get("/alerts")
def alerts() -> str:
    state = request.args.get("state", "open")
    if state not in ALERT_STATES:
        state = "open"
    return render_template("admin/alerts.html", alerts=console.alerts_page(state), state=state,
                           differences=[console.difference_words(d) for d in console.open_differences(200)],
                           words=console.alert_words, acted=tuple(kind for kinds in bill_actions.ACTION_KINDS.values() for kind in kinds))


@bp.post("/alerts/<alert_id>/acknowledge")
def acknowledge(alert_id: str) -> BaseResponse:
    console.acknowledge_alert(current_shop(), _id(alert_id), actor=admin._actor(), ip=request.remote_addr)
    flash("已确认告警：你在处理它。 Alert acknowledged: you are on it.")
    return redirect(_back(url_for("console.alerts")), 303)


@bp.post("/alerts/<alert_id>/resolve")
def resolve(alert_id: str) -> BaseResponse:
    console.resolve_alert(current_shop(), _id(alert_id), actor=admin._actor(), ip=request.remote_addr,
                          note=request.form.get("note", ""))
    flash("告警已解决。 Alert resolved.")
    return redirect(_back(url_for("console.alerts")), 303)


@bp.post("/bill-differences/<difference_id>/resolve")
def resolve_difference(difference_id: str) -> BaseResponse:
    console.resolve_difference(current_shop(), _id(difference_id), actor=admin._actor(), ip=request.remote_addr,
                               note=request.form.get("note", ""))
    flash("对账差异已处理。 Bill difference settled.")
    return redirect(_back(url_for("console.alerts")), 303)


@bp.get("/audit")
def audit() -> str:
    a = request.args
    before = a.get("before", "")
    f = console.AuditFilter(order=a.get("order", "").strip(), actor=a.get("actor", "").strip(),
                            kind=a.get("kind", "").strip(), since=reports.parse_day(a.get("since")),
                            until=reports.parse_day(a.get("until")),
                            before=int(before) if before.isdigit() and len(before) < 13 else None)
    page = console.audit_page(f)
    chain = reports.chain_status()
    args = {k: v for k, v in a.items() if k != "before" and v}
    return render_template("admin/audit.html", page=page, f=f, chain=chain, chain_words=console.chain_words(chain),
                           kinds=console.audit_kinds(), args=args)


@bp.get("/customers")
def customers() -> Any:
    q = request.args.get("q", "").strip()
    found = console.search(q) if q else None
    return render_template("admin/customers.html", q=q, found=found,
                           recent=None if q else console.recent_customers())


@bp.get("/customer")
def customer() -> str:
    person = console.customer(request.args.get("email", ""))
    if person is None:
        abort(404)
    return render_template("admin/customer.html", c=person, now=current_shop().now())


@bp.get("/fapiao")
def fapiao() -> str:
    return render_template("admin/fapiao.html", to_issue=receipts.open_requests(), issued=receipts.issued_requests(),
                           pdf_max_mb=receipts.PDF_MAX // (1024 * 1024))


@bp.post("/fapiao/<request_id>/issued")
def issue_fapiao(request_id: str) -> BaseResponse:
    upload = request.files.get("pdf")
    pdf = upload.read() if upload is not None and upload.filename else None
    receipts.mark_issued(current_shop(), _id(request_id), actor=admin._actor(), ip=request.remote_addr,
                         note=request.form.get("note", ""), pdf=pdf)
    flash("已标记为已开具，邮件已排队发给学员。 Marked issued; the learner's mail is queued.")
    return redirect(url_for("console.fapiao"), 303)


# Forms that carry a file, and how big they may be (every other form: 64 KiB).
BIG_FORMS = {"console.issue_fapiao": receipts.PDF_MAX + 64 * 1024, "admin.course_form": COVER_MAX + 64 * 1024}


def _room_for_a_file() -> None:
    # Before the CSRF check reads the form.
    if request.endpoint in BIG_FORMS and request.method == "POST":
        request.max_content_length = BIG_FORMS[request.endpoint]


def _badge() -> dict[str, Any]:
    # A function, so only a signed-in console page (whose layout calls it) pays for the two counts.
    shop = current_shop()
    return {"open_counts": console.open_counts, "alert_channel": bool(shop.config.alert_email),
            "fapiao_waiting": receipts.open_count}


def init_app(app: Flask) -> None:
    """Register the pages (after the console, whose sign-in they use) and the nav badge's counts."""
    app.register_blueprint(bp)
    app.before_request_funcs.setdefault(None, []).insert(0, _room_for_a_file)
    app.context_processor(_badge)
    app.jinja_env.filters["action_words"] = console.action_words
