"""Classroom seats on the web: buying a pack on /buy, the buyer's seat page, and the console's pages.

Every page is a plain form and a server-rendered answer (a meta refresh while a pack waits for its
payment), so it works the same with and without JavaScript.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from billing import CATALOGUE, BillingError, limits, reports, seats
from billing.courses import all_courses, course_for_sale
from billing.orders import COURSE_ID, cancel_order, order_for_token, order_view, place_order
from billing.reconcile import check_on_poll

from . import current_shop
from .admin import _actor, bp as admin_bp

bp = Blueprint("seats", __name__)

_KEEP_PACKS = 5
# Wrong seat page links from one client: beyond this, guessing is refused for a while (429).
SEAT_MISSES_PER_CLIENT = limits.ORDER_MISSES_PER_CLIENT


@bp.app_template_global("seat_offer")
def seat_offer(course_id: str) -> Any:
    """The course's active seat offer, for the buy page's "buy for a class" form (None: not sold in packs)."""
    return seats.offer_for(course_id)


def _problem(exc: BillingError) -> dict[str, Any]:
    text = CATALOGUE[exc.code]
    return {"code": exc.code, "zh": text.message_zh, "en": text.message_en, "detail": exc.detail}


def _course_or_404(course_id: str) -> Any:
    course = course_for_sale(course_id) if COURSE_ID.match(course_id) else None
    if course is None:
        raise BillingError("course_not_found")
    return course


@bp.errorhandler(BillingError)
def _billing_error(exc: BillingError) -> tuple[str, int]:
    """A refusal on the public seat pages: the catalogue's words, the reason, and the page again."""
    return render_template("seats_problem.html", problem=_problem(exc)), exc.status


# --- buying a pack -------------------------------------------------------------------------------

def _pack_tokens() -> dict[str, str]:
    tokens = session.get("packs")
    return dict(tokens) if isinstance(tokens, dict) else {}


def _seat_count(value: str | None) -> Any:
    """The seats field as typed: a whole number, or the text itself (billing refuses it with its reason)."""
    value = (value or "").strip()
    return int(value) if value.isdigit() and len(value) <= 6 else value


@bp.post("/buy/<course_id>/seats")
def buy_seats(course_id: str) -> BaseResponse | tuple[str, int]:
    course = _course_or_404(course_id)
    email = (request.form.get("email") or "").strip() or None
    try:
        placed = place_order(current_shop(), course_id=course.id, email=email, seats=_seat_count(request.form.get("seats")),
                             ip=request.remote_addr)
    except BillingError as exc:
        return render_template("seats_order.html", course=course, offer=seats.offer_for(course.id),
                               problem=_problem(exc), form=request.form), exc.status
    tokens = _pack_tokens()
    tokens[placed.order.public_id] = placed.order_token
    session["packs"] = dict(list(tokens.items())[-_KEEP_PACKS:])
    return redirect(url_for("seats.pack_order", course_id=course.id, order_id=placed.order.public_id), 303)


@bp.get("/buy/<course_id>/packs/<order_id>")
def pack_order(course_id: str, order_id: str) -> str:
    course = _course_or_404(course_id)
    order = check_on_poll(current_shop(), order_for_token(order_id, _pack_tokens().get(order_id)))
    view = order_view(current_shop(), order)
    pack = seats.pack_of_order(order_id)
    if pack is None:
        raise BillingError("order_not_found")
    page = seats.seat_page_path(current_shop(), order) if view["status"] in seats.USABLE else None
    return render_template("seats_order.html", course=course, view=view, pack=pack, seat_page=page,
                           qr_svg=order.qr_svg if view["status"] == "pending" else None,
                           sandbox=current_shop().config.mode == "sandbox")


@bp.post("/buy/<course_id>/packs/<order_id>/cancel")
def pack_cancel(course_id: str, order_id: str) -> BaseResponse:
    _course_or_404(course_id)
    cancel_order(current_shop(), order_for_token(order_id, _pack_tokens().get(order_id)), ip=request.remote_addr)
    return redirect(url_for("seats.pack_order", course_id=course_id, order_id=order_id), 303)


# --- the buyer's seat page ---------------------------------------------------------------------------

def _pack(token: str) -> Any:
    try:
        return seats.pack_for_token(token)
    except BillingError:
        limits.throttle("seat_misses", request.remote_addr, SEAT_MISSES_PER_CLIENT, current_shop().now())
        raise


def _seat_page(token: str, problem: dict[str, Any] | None = None, status: int = 200) -> tuple[str, int]:
    view = seats.pack_view(_pack(token))
    return render_template("seats.html", v=view, token=token, problem=problem,
                           done=request.args.get("done")), status


@bp.get("/seats/<token>")
def seat_page(token: str) -> tuple[str, int]:
    return _seat_page(token)


@bp.post("/seats/<token>/assign")
def seat_assign(token: str) -> BaseResponse | tuple[str, int]:
    pack = _pack(token)
    try:
        seats.assign(current_shop(), pack, request.form.get("emails", ""), actor="buyer", ip=request.remote_addr)
    except BillingError as exc:
        return _seat_page(token, _problem(exc), exc.status)
    return redirect(url_for("seats.seat_page", token=token, done="assigned"), 303)


@bp.post("/seats/<token>/move")
def seat_move(token: str) -> BaseResponse | tuple[str, int]:
    pack = _pack(token)
    try:
        seats.move(current_shop(), pack, _seat_count(request.form.get("seat")), request.form.get("email", ""),
                   actor="buyer", ip=request.remote_addr)
    except BillingError as exc:
        return _seat_page(token, _problem(exc), exc.status)
    return redirect(url_for("seats.seat_page", token=token, done="moved"), 303)


# --- the console -----------------------------------------------------------------------------------

def _console_pack(public_id: str) -> Any:
    pack = seats.pack_of_order(public_id)
    if pack is None:
        abort(404)
    return pack


def _admin_pack_page(public_id: str, problem: dict[str, Any] | None = None, status: int = 200) -> tuple[str, int]:
    view = seats.pack_view(_console_pack(public_id))
    return render_template("admin/seat_pack.html", v=view, problem=problem,
                           seat_page=current_shop().config.public_base_url.rstrip("/")
                           + seats.seat_page_path(current_shop(), view.order)), status


@admin_bp.get("/seats")
def seat_packs() -> str:
    return render_template("admin/seats.html", courses=all_courses(), offers=seats.all_offers(), packs=seats.packs())


def _whole(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 6:
        raise BillingError("bad_request", f"not a whole number: {value[:20]}")
    return int(value)


@admin_bp.post("/seats/offer")
def seat_offer_save() -> BaseResponse:
    form = request.form
    volume = (form.get("volume_price") or "").strip()
    seats.save_offer(current_shop(), course_id=form.get("course", ""),
                     seat_fen=reports.parse_yuan(form.get("seat_price", "")),
                     volume_min=_whole(form.get("volume_min")),
                     volume_fen=reports.parse_yuan(volume) if volume else None,
                     max_seats=_whole(form.get("max_seats")) or 100, active=form.get("active") == "on",
                     actor=_actor(), ip=request.remote_addr)
    flash("已保存座位价格。 Seat prices saved.")
    return redirect(url_for("admin.seat_packs"), 303)


@admin_bp.get("/seats/<public_id>")
def seat_pack(public_id: str) -> tuple[str, int]:
    return _admin_pack_page(public_id)


@admin_bp.post("/seats/<public_id>/assign")
def seat_pack_assign(public_id: str) -> BaseResponse | tuple[str, int]:
    try:
        seats.assign(current_shop(), _console_pack(public_id), request.form.get("emails", ""), actor=_actor(),
                     ip=request.remote_addr)
    except BillingError as exc:
        return _admin_pack_page(public_id, _problem(exc), exc.status)
    flash("已分配。 Assigned.")
    return redirect(url_for("admin.seat_pack", public_id=public_id), 303)


@admin_bp.post("/seats/<public_id>/move")
def seat_pack_move(public_id: str) -> BaseResponse | tuple[str, int]:
    try:
        seats.move(current_shop(), _console_pack(public_id), _seat_count(request.form.get("seat")),
                   request.form.get("email", ""), actor=_actor(), ip=request.remote_addr)
    except BillingError as exc:
        return _admin_pack_page(public_id, _problem(exc), exc.status)
    flash("已转让。 Moved.")
    return redirect(url_for("admin.seat_pack", public_id=public_id), 303)


@admin_bp.post("/seats/<public_id>/refund")
def seat_pack_refund(public_id: str) -> BaseResponse | tuple[str, int]:
    chosen = [_seat_count(n) for n in request.form.getlist("seat")]
    try:
        made = seats.refund_seats(current_shop(), _console_pack(public_id), chosen,
                                  reason=request.form.get("reason", ""), actor=_actor(), ip=request.remote_addr)
    except BillingError as exc:
        return _admin_pack_page(public_id, _problem(exc), exc.status)
    flash(f"退款 Refund {made.out_refund_no}: {reports.status_label(made.status)}")
    return redirect(url_for("admin.seat_pack", public_id=public_id), 303)
