"""The console's discount pages under /admin/codes: create a code or launch price, pause it, see its uses and revenue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from billing import BillingError, discounts, reports
from billing.courses import all_courses

from . import current_shop
from .admin import _actor, bp


def _when(value: str | None) -> dt.datetime | None:
    """A datetime-local field, in Beijing time as the creator types it, as aware UTC."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=reports.SHANGHAI).astimezone(dt.timezone.utc)
    except ValueError:
        raise BillingError("bad_request", f"not a date and time: {value[:40]}") from None


def _whole(value: str | None, name: str) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 12:
        raise BillingError("bad_request", f"{name} is a whole number")
    return int(value)


@bp.get("/codes")
def codes() -> str:
    return render_template("admin/codes.html", rows=discounts.summaries(current_shop().now()),
                           now=current_shop().now())


@bp.route("/codes/new", methods=["GET", "POST"])
def code_form() -> Any:
    if request.method != "POST":
        return render_template("admin/code_form.html", courses=all_courses())
    form = request.form
    kind = form.get("kind", "")
    if kind == "percent":
        value = _whole(form.get("percent"), "the percent")
    else:
        value = reports.parse_yuan(form.get("amount", "")) if form.get("amount", "").strip() else None
    if value is None:
        raise BillingError("bad_request", "give the percent or the amount")
    made = discounts.create(kind=kind, value=value, code=form.get("code") or None,
                            course_id=form.get("course") or None, starts_at=_when(form.get("starts_at")),
                            ends_at=_when(form.get("ends_at")), max_uses=_whole(form.get("max_uses"), "at most N uses"),
                            once_per_buyer=form.get("once_per_buyer") == "on", note=form.get("note", ""),
                            actor=_actor(), now=current_shop().now(), ip=request.remote_addr)
    flash(f"已创建 {discounts.describe(made)}。 Created.")
    return redirect(url_for("admin.code_detail", discount_id=made.id), 303)


@bp.get("/codes/<discount_id>")
def code_detail(discount_id: str) -> str:
    discount = discounts.find(int(discount_id)) if discount_id.isdigit() and len(discount_id) < 12 else None
    if discount is None:
        abort(404)
    summary = next(s for s in discounts.summaries(current_shop().now()) if s.discount.id == discount.id)
    return render_template("admin/code.html", s=summary, orders=discounts.orders_of(discount.id))


@bp.post("/codes/<discount_id>/pause")
def code_pause(discount_id: str) -> BaseResponse:
    if not discount_id.isdigit() or len(discount_id) >= 12:
        abort(404)
    paused = request.form.get("paused", "1") == "1"
    discounts.set_paused(int(discount_id), paused, actor=_actor(), now=current_shop().now(), ip=request.remote_addr)
    flash("已暂停。 Paused." if paused else "已恢复。 Resumed.")
    return redirect(url_for("admin.code_detail", discount_id=discount_id), 303)
