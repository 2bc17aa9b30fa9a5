"""/sandbox/mail: in sandbox mode, the outbox as a newcomer would want to read it (what a learner receives)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from billing import reports

bp = Blueprint("sandbox_mail", __name__)


@bp.get("/sandbox/mail")
def outbox() -> str:
    # Live mode has no such page: real learners' mail is nobody's demo.
    if current_app.config.get("WECHATPAY_MODE") != "sandbox":
        abort(404)
    return render_template("sandbox_mail.html", mails=reports.outbox())
