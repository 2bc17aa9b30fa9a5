"""The extension's JSON API under /api/v1."""

from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Response, jsonify, request

from billing import CATALOGUE, BillingError, discounts, error_body, learners, limits, seats
from billing.orders import (
    cancel_order,
    email_notice,
    order_for_token,
    order_view,
    place_order,
    poll_order,
    refresh_code_url,
    unchanged_answer_tag,
)
from billing.alipay_method import offered_methods
from billing.courses import courses_for_sale
from billing.reconcile import check_on_poll

from . import current_shop

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def api_error(code: str, detail: str = "", retry_after: int | None = None,
              extra: dict[str, Any] | None = None) -> Response:
    """Answer with the catalogue's body and status for ``code``."""
    response = jsonify({**error_body(code, detail), **(extra or {})})
    response.status_code = CATALOGUE[code].status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@bp.errorhandler(BillingError)
def _billing_error(exc: BillingError) -> Response:
    return api_error(exc.code, exc.detail, exc.retry_after, exc.extra)


def _json_object() -> dict[str, Any]:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser's stack: not a body we would ever accept
        raise BillingError("bad_request", "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BillingError("bad_request", "the body must be a JSON object")
    return data


def _bearer() -> str | None:
    return bearer_token(request.headers.get("Authorization", ""))


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None



@bp.get("/courses")
def list_courses() -> Response:
    courses = courses_for_sale()
    # The methods a client may offer (POST /orders {"method"}): only those switched on in this shop.
    return jsonify(courses=[
        {"id": c.id, "title": c.title, "price_fen": c.price_fen, "currency": c.currency,
         "plan": c.plan, "period_days": c.period_days} for c in courses],
        payment_methods=list(offered_methods(current_shop())))


@bp.post("/orders")
def create_order() -> tuple[Response, int]:
    data = _json_object()
    unknown = set(data) - {"course_id", "email", "buyer_token", "code", "seats", "method"}
    if unknown:
        raise BillingError("bad_request", f"unknown fields: {', '.join(sorted(unknown))}")
    placed = _code_guard(data.get("code") is not None, lambda: place_order(
        current_shop(), course_id=data.get("course_id"), email=data.get("email"),
        buyer_token=data.get("buyer_token"), ip=request.remote_addr,
        idempotency_key=request.headers.get("Idempotency-Key"), code=data.get("code"), seats=data.get("seats"),
        method=data.get("method")))
    view = order_view(current_shop(), placed.order)
    view.update(qr_svg=placed.order.qr_svg, order_token=placed.order_token,
                buyer_token=placed.buyer_token,
                email_notice=email_notice(placed.order.course.plan, placed.order.email))
    if data.get("seats") is not None:
        view["seats"] = seats.pack_answer(current_shop(), placed.order)
    return jsonify(view), 201


def _code_guard(with_code: bool, place: Callable[[], Any]) -> Any:
    """Place an order; a client that keeps sending codes that do not exist is refused for a while."""
    if not with_code:
        return place()
    client, now = request.remote_addr, current_shop().now()
    limits.refuse_if_over("code_misses", client, discounts.CODE_MISSES_PER_CLIENT, now)
    try:
        return place()
    except BillingError as exc:
        if exc.code == "code_not_found":
            limits.throttle("code_misses", client, discounts.CODE_MISSES_PER_CLIENT, now)
        raise


def _guessing_guard(lookup: Callable[[], Any]) -> Any:
    """Run an order lookup; a client that keeps missing (guessing ids or tokens) is refused for a while.

    Only misses are refused: a right token is never a guess, so a learner behind the same address
    (a campus NAT) as a guesser is still answered.
    """
    try:
        return lookup()
    except BillingError as exc:
        if exc.code == "order_not_found":
            limits.throttle("order_misses", request.remote_addr, limits.ORDER_MISSES_PER_CLIENT, current_shop().now())
        raise


@bp.get("/orders/<order_id>")
def get_order(order_id: str) -> Response:
    offered = request.headers.get("If-None-Match")
    if offered:
        # A client holding a final answer: one read and a digest decide, nothing is built.
        held = _guessing_guard(lambda: unchanged_answer_tag(current_shop(), order_id, _bearer(), offered))
        if held is not None:
            unchanged = Response(status=304)  # what the client holds is still the answer: no body
            unchanged.set_etag(held)
            return unchanged
    order, license = _guessing_guard(lambda: poll_order(current_shop(), order_id, _bearer()))
    checked = check_on_poll(current_shop(), order)
    if refresh_code_url(current_shop(), checked):
        checked = order_for_token(order_id, _bearer())  # a new code_url (the old one nears its 2 hours)
    if checked is not order:  # WeChat was asked just now: show what it said
        return jsonify(order_view(current_shop(), checked))
    tag = order.answer_tag
    response = jsonify(order_view(current_shop(), order, license, look_up_license=False))
    if tag is not None:
        response.set_etag(tag)
    return response


@bp.post("/orders/<order_id>/cancel")
def cancel(order_id: str) -> Response:
    order = _guessing_guard(lambda: order_for_token(order_id, _bearer()))
    return jsonify(order_view(current_shop(), cancel_order(current_shop(), order, ip=request.remote_addr)))


@bp.get("/license-keys")
def license_keys() -> Response:
    return jsonify(keys=current_shop().license_keys.describe())


# --- the learner's side: history, license status, revocations, resend ---------------------

@bp.get("/me/orders")
def my_orders() -> Response:
    return jsonify(orders=learners.order_history(current_shop(), learners.buyer_for_token(_bearer())))


@bp.get("/me/licenses")
def my_licenses() -> Response:
    return jsonify(licenses=learners.buyer_licenses(current_shop(), learners.buyer_for_token(_bearer())))


@bp.post("/licenses/resend")
def resend_licenses() -> tuple[Response, int]:
    data = _json_object()
    if set(data) != {"email"}:
        raise BillingError("bad_request", "the body must be {\"email\": ...}")
    learners.request_resend(current_shop(), data["email"], ip=request.remote_addr)
    # The same answer whether or not the address bought anything, or was over its limit.
    return jsonify(accepted=True), 202


@bp.get("/licenses/<license_id>/status")
def license_status(license_id: str) -> Response:
    limits.throttle("status", request.remote_addr, limits.STATUS_PER_CLIENT, current_shop().now())
    return jsonify(learners.license_status(current_shop(), license_id))


@bp.get("/revocations")
def revocations() -> Response:
    limits.throttle("revocations", request.remote_addr, limits.REVOCATIONS_PER_CLIENT, current_shop().now())
    return Response(learners.revocation_list(current_shop()) + "\n", mimetype="text/plain")
