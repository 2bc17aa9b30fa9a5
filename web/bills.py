"""The creator's page of daily-bill differences: where WeChat Pay's or Alipay's trade bill and our orders disagree."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from billing import BillingError, bill_actions, daily_bill, reports
from operations.jobs import check_daily_bills

from . import admin, current_shop

bp = Blueprint("bills", __name__, url_prefix="/admin/bills")
# The console's own sign-in and idle checks, and its no-store answers.
bp.before_request(admin._require_admin)
bp.after_request(admin._no_store)
# WeChat Pay keeps trade bills for three months.
OLDEST_DAYS = 90


@bp.get("")
def differences(problem: tuple[str, str] | None = None, refused: bill_actions.ActionRefused | None = None) -> str:
    """Every kept difference, newest day first, and the days each method's bill was compared so far."""
    shop = current_shop()
    yesterday = daily_bill.beijing_day(shop.now()) - dt.timedelta(days=1)
    alipay_checks = daily_bill.bill_checks(method="alipay")
    return render_template("admin/bills.html", differences=daily_bill.bill_differences(),
                           checks=daily_bill.bill_checks(), kinds=daily_bill.KINDS, yesterday=yesterday,
                           # Alipay's days while the shop takes Alipay, and any it checked before it stopped.
                           alipay_checks=alipay_checks if alipay_checks or shop.alipay is not None else None,
                           oldest=yesterday - dt.timedelta(days=OLDEST_DAYS - 1), problem=problem, refused=refused,
                           action_kinds=bill_actions.ACTION_KINDS)


@bp.post("/check")
def check_now() -> BaseResponse | tuple[str, int]:
    """Check one day's bill now (what `lbpay bill check --date` does), and say what came of it in words."""
    shop = current_shop()
    yesterday = daily_bill.beijing_day(shop.now()) - dt.timedelta(days=1)
    oldest = yesterday - dt.timedelta(days=OLDEST_DAYS - 1)
    try:
        day = reports.parse_day(request.form.get("date"))
    except BillingError:
        day = None
    if day is None or not oldest <= day <= yesterday:
        return differences(problem=(f"请选择 {oldest} 到 {yesterday} 之间的一天（今天的账单明天 10:00 后才有）。",
                                    f"Pick a day from {oldest} to {yesterday}: today's bill comes after 10:00 "
                                    "tomorrow.")), 400
    summary = check_daily_bills(shop, shop.now(), days=[day])
    _say_what_came_of(day, summary, ("微信支付", "WeChat Pay"))
    if "alipay" in summary:
        _say_what_came_of(day, summary["alipay"], ("支付宝", "Alipay"))
    return redirect(url_for("bills.differences"), 303)


def _say_what_came_of(day: dt.date, summary: dict[str, object], who: tuple[str, str]) -> None:
    """One method's outcome of checking ``day`` as a flash, naming whose bill it was."""
    zh, en = who
    count = summary.get("differences")
    if summary.get("failed"):
        flash(f"{zh} {day} 的账单没能下载，已记为告警，稍后再试。 {en}'s bill of {day} could not be fetched; "
              "an alert is raised, try again later.")
    elif summary.get("not_ready"):
        flash(f"{zh}还没有生成 {day} 的账单（每天 10:00 后生成），稍后再试。 "
              f"{en} has not made the bill of {day} yet (it does after 10:00); try again later.")
    elif count:
        flash(f"{zh}：已核对 {day}，发现 {count} 处差异，见下表。 {en}: Checked {day}: {count} difference(s), listed below.")
    else:
        flash(f"{zh}：已核对 {day}，与本店订单一致。 {en}: Checked {day}: it matches our orders.")


def _difference_id(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 13 else 0


@bp.post("/differences/<difference_id>/issue-license")
def issue_license(difference_id: str) -> BaseResponse | tuple[str, int]:
    """Ask WeChat about a paid, unlicensed order and, if it is paid, issue its license the usual way."""
    try:
        done = bill_actions.issue_missing_license(current_shop(), _difference_id(difference_id),
                                                  actor=admin._actor(), ip=request.remote_addr)
    except bill_actions.ActionRefused as refused:
        return differences(refused=refused), refused.status
    flash(f"{done.zh} {done.en}")
    return redirect(url_for("bills.differences") + f"#difference-{done.difference_id}", 303)


@bp.post("/differences/<difference_id>/adopt-refund")
def adopt_refund(difference_id: str) -> BaseResponse | tuple[str, int]:
    """Ask WeChat about a refund the bill lists and record it by the one refund path."""
    try:
        done = bill_actions.adopt_refund(current_shop(), _difference_id(difference_id), actor=admin._actor(),
                                         ip=request.remote_addr)
    except bill_actions.ActionRefused as refused:
        return differences(refused=refused), refused.status
    flash(f"{done.zh} {done.en}")
    return redirect(url_for("bills.differences") + f"#difference-{done.difference_id}", 303)


def init_app(app: Flask) -> None:
    """Register the page (after the console, whose sign-in it uses)."""
    app.register_blueprint(bp)
