"""The creator's page of daily-bill differences: where WeChat Pay's trade bill and our orders disagree."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template

from billing import daily_bill

from . import admin

bp = Blueprint("bills", __name__, url_prefix="/admin/bills")
# The console's own sign-in and idle checks, and its no-store answers.
bp.before_request(admin._require_admin)
bp.after_request(admin._no_store)


@bp.get("")
def differences() -> str:
    """Every kept difference, newest day first, and the days compared so far."""
    return render_template("admin/bills.html", differences=daily_bill.bill_differences(),
                           checks=daily_bill.bill_checks(), kinds=daily_bill.KINDS)


def init_app(app: Flask) -> None:
    """Register the page (after the console, whose sign-in it uses)."""
    app.register_blueprint(bp)
