"""WeChat Pay's notifications (payments, refunds and complaints): read off the request and handed to billing to verify."""

from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Response, jsonify, request

from billing.complaints import receive_complaint_notification
from billing.payments import NotifyAnswer, receive_transaction_notification
from billing.refunds import receive_refund_notification

from . import current_shop

bp = Blueprint("notify", __name__, url_prefix="/wechatpay/notify")

SIGNED_HEADERS = ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature",
                  "Wechatpay-Serial", "Wechatpay-Signature-Type")


def fail(status: int, message: str) -> Response:
    """WeChat's failure body; the status is what WeChat acts on."""
    response = jsonify(code="FAIL", message=message)
    response.status_code = status
    return response


def _receive(handler: Callable[..., NotifyAnswer]) -> Response:
    headers = {}
    for name in SIGNED_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        if "," in value:
            # WSGI keeps one value per name, so a header sent twice arrives joined by a comma,
            # which none of these headers ever holds.
            return fail(400, f"header {name} given more than once")
        headers[name] = value
    body = request.get_data(cache=False)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(body) >= limit:
        # A chunked body is cut at the limit without a word (werkzeug's stream stops there):
        # one that reaches it is over it as far as we can tell, and is refused unread.
        return fail(413, "body too large")
    answer = handler(current_shop(), body, headers, ip=request.remote_addr)
    if answer.status == 204:
        return Response(status=204)
    return fail(answer.status, answer.message)


@bp.post("/transaction")
def transaction() -> Any:
    return _receive(receive_transaction_notification)


@bp.post("/refund")
def refund() -> Any:
    return _receive(receive_refund_notification)


@bp.post("/complaint")
def complaint() -> Any:
    return _receive(receive_complaint_notification)
