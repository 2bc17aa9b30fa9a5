"""The control API: drive the simulator from tests and demos (pay, inspect logs, inject faults)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for

from . import bills
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


@bp.post("/orders/<out_trade_no>/refund")
def refund_by_hand(out_trade_no: str) -> Response:
    """A refund made by hand in 商户平台: ``{"refund": fen}``; its number is WeChat's, not the merchant server's."""
    fen = _payload().get("refund")
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 1:
        raise _bad("refund must be a positive number of fen")
    return json_response(sandbox().refund_by_hand(out_trade_no, fen), 201)


@bp.post("/notifications/<out_trade_no>/resend")
def resend_notification(out_trade_no: str) -> Response:
    try:
        notification = sandbox().resend_payment_notification(out_trade_no)
    except LookupError as exc:
        return json_response({"error": str(exc)}, 409)
    return json_response({"notification_id": notification.id, "url": notification.url}, 202)


@bp.post("/refunds/<out_refund_no>/resend")
def resend_refund_notification(out_refund_no: str) -> Response:
    """Re-send a refund's latest notification (a WeChat re-send after the merchant's server was down)."""
    try:
        notification = sandbox().resend_refund_notification(out_refund_no)
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


@bp.post("/keys")
def set_keys() -> Response:
    """Move the key switch: ``{"phase": "certificate"|"gray"|"public_key", "switch": true|false}``."""
    payload = _payload()
    phase = payload.get("phase")
    switch = payload.get("switch")
    if switch is not None and not isinstance(switch, bool):
        raise _bad("switch must be true or false")
    state = sandbox()
    try:
        state.set_keys(phase, switch)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    return json_response(_keys(state))


def _keys(state: SandboxState) -> dict[str, Any]:
    with state.lock:
        identity = state.identity
        return {
            "phase": state.key_phase,
            "switch": state.switch_on,
            "public_key_id": identity.public_key_id,
            "certificate_serial": identity.certificate_serial if state.config.certificates else None,
            "certificate_serials": [c.serial for c in identity.certificates] if state.config.certificates else [],
        }


@bp.get("/keys")
def show_keys() -> Response:
    return json_response(_keys(sandbox()))


@bp.post("/certificates/rotate")
def rotate_certificate() -> Response:
    """Issue a new platform certificate (new key); ``{"activate": false}`` only lists it, as WeChat does first."""
    activate = _payload().get("activate", True)
    if not isinstance(activate, bool):
        raise _bad("activate must be true or false")
    state = sandbox()
    with state.lock:
        state.identity.rotate_certificate(activate)
    return json_response(_keys(state))


@bp.post("/certificates/activate")
def activate_certificate() -> Response:
    """Make the newest platform certificate the one that signs."""
    state = sandbox()
    with state.lock:
        state.identity.current = state.identity.certificates[-1]
    return json_response(_keys(state))


@bp.post("/settings")
def change_settings() -> Response:
    """Compress time for tests: ``{"code_url_lifetime": seconds, "bill_ready_after": seconds}``.

    ``{"code_url_reuse": true}``: an identical repeat of an unpaid order gives back the same
    code_url while it lives (WeChat documents neither this nor the opposite).
    """
    payload = _payload()
    unknown = set(payload) - {"code_url_lifetime", "bill_ready_after", "code_url_reuse"}
    if unknown:
        raise _bad("unknown keys: " + ", ".join(sorted(unknown)))
    state = sandbox()
    if "code_url_reuse" in payload:
        if not isinstance(payload["code_url_reuse"], bool):
            raise _bad("code_url_reuse must be true or false")
        with state.lock:
            state.code_url_reuse = payload["code_url_reuse"]
    for name in ("code_url_lifetime", "bill_ready_after"):
        if name in payload:
            value = payload[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _bad(f"{name} must be a number of seconds")
            if name == "code_url_lifetime" and value <= 0:
                raise _bad("code_url_lifetime must be positive")
    with state.lock:
        for name in ("code_url_lifetime", "bill_ready_after"):
            if name in payload:
                setattr(state, name, float(payload[name]))
        return json_response({"code_url_lifetime": state.code_url_lifetime, "bill_ready_after": state.bill_ready_after,
                              "code_url_reuse": state.code_url_reuse})


@bp.post("/bills/plants")
def plant_bill_difference() -> Response:
    """Plant a difference into the trade bills (see sandbox/bills.py PLANT_KINDS)."""
    try:
        entry = bills.plant(sandbox(), _payload())
    except ValueError as exc:
        raise _bad(str(exc)) from None
    return json_response(entry, 201)


@bp.get("/bills/plants")
def show_bill_plants() -> Response:
    state = sandbox()
    with state.lock:
        return json_response({"plants": list(state.bill_plants)})


@bp.delete("/bills/plants")
def clear_bill_plants() -> Response:
    state = sandbox()
    with state.lock:
        state.bill_plants.clear()
    return current_app.response_class(b"", status=204)


@bp.get("/bills/<bill_date>")
def show_bill(bill_date: str) -> Response:
    """The trade bill of a day as the download would carry it (uncompressed), published or not."""
    try:
        day = datetime.date.fromisoformat(bill_date)
    except ValueError:
        raise _bad("date must be YYYY-MM-DD") from None
    text, _ = bills.build_trade_bill(sandbox(), day)
    return current_app.response_class(text, status=200, mimetype="text/csv")
