"""The control API: drive the simulator from tests and demos (pay, inspect logs, inject faults)."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for

from .api import json_response
from .phone import RESULTS
from .refusal import Refusal
from .state import Faults, Order, SandboxState

bp = Blueprint("control", __name__)


def sandbox() -> SandboxState:
    state: SandboxState = current_app.extensions["wechatpay_sandbox"]
    return state


def _payload() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None and not request.get_data():
        return {}
    if not isinstance(data, dict):
        raise _bad("body must be a JSON object")
    return data


class _BadControlRequest(Exception):
    pass


def _bad(message: str) -> _BadControlRequest:
    return _BadControlRequest(message)


@bp.errorhandler(_BadControlRequest)
def _bad_request(exc: _BadControlRequest) -> Response:
    return json_response({"error": str(exc)}, 400)


@bp.errorhandler(Refusal)
def _refused(refusal: Refusal) -> Response:
    return json_response({"error": refusal.message, "code": refusal.code}, refusal.status)


def _details(order: Order) -> dict[str, Any]:
    details = sandbox().order_details(order)
    details["pay_page"] = url_for("phone.pay_page", pr=order.pr, _external=True)
    return details


@bp.get("/orders")
def list_orders() -> Response:
    state = sandbox()
    with state.lock:
        orders = list(state.orders.values())
    return json_response({"orders": [_details(o) for o in orders]})


@bp.get("/orders/<out_trade_no>")
def show_order(out_trade_no: str) -> Response:
    return json_response(_details(sandbox().order(out_trade_no)))


@bp.post("/orders/<out_trade_no>/pay")
def pay_order(out_trade_no: str) -> Response:
    state = sandbox()
    order = state.order(out_trade_no)
    result = _payload().get("result", "success")
    if result not in RESULTS:
        raise _bad("result must be success, insufficient or cancel")
    outcome = state.attempt_payment(order, result)
    status = 409 if outcome.kind == "refused" else 200
    return json_response({"outcome": outcome.kind, "message": outcome.en, "order": _details(order)}, status)


@bp.get("/refunds/<out_refund_no>")
def show_refund(out_refund_no: str) -> Response:
    state = sandbox()
    return json_response(state.refund_view(state.refund(out_refund_no)))


@bp.post("/refunds/<out_refund_no>/settle")
def settle_refund(out_refund_no: str) -> Response:
    status = _payload().get("status", "SUCCESS")
    try:
        view = sandbox().settle_refund(out_refund_no, status)
    except ValueError as exc:
        return json_response({"error": str(exc)}, 409)
    return json_response(view)


@bp.post("/notifications/<out_trade_no>/resend")
def resend_notification(out_trade_no: str) -> Response:
    try:
        notification = sandbox().resend_payment_notification(out_trade_no)
    except LookupError as exc:
        return json_response({"error": str(exc)}, 409)
    return json_response({"notification_id": notification.id, "url": notification.url}, 202)


@bp.get("/requests")
def request_log() -> Response:
    state = sandbox()
    with state.lock:
        return json_response({"requests": list(state.request_log)})


@bp.get("/deliveries")
def delivery_log() -> Response:
    state = sandbox()
    with state.lock:
        return json_response({"deliveries": list(state.delivery_log)})


@bp.delete("/log")
def clear_log() -> Response:
    sandbox().clear_logs()
    return current_app.response_class(b"", status=204)


@bp.get("/faults")
def show_faults() -> Response:
    state = sandbox()
    with state.lock:
        return json_response(state.faults.describe())


@bp.post("/faults")
def arm_faults() -> Response:
    state = sandbox()
    payload = _payload()
    with state.lock:
        # Arm a copy so that a bad payload changes nothing.
        armed = dataclasses.replace(state.faults)
        try:
            armed.arm(payload, now=state.now())
        except (ValueError, TypeError) as exc:
            raise _bad(str(exc)) from None
        state.faults = armed
        return json_response(armed.describe())


@bp.delete("/faults")
def reset_faults() -> Response:
    state = sandbox()
    with state.lock:
        state.faults = Faults()
    return current_app.response_class(b"", status=204)
