"""WeChat Pay's notifications: kept raw, verified, then handed to billing."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from billing.payments import receive_transaction_notification

bp = Blueprint("notify", __name__, url_prefix="/wechatpay/notify")

SIGNED_HEADERS = ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature",
                  "Wechatpay-Serial", "Wechatpay-Signature-Type")


def fail(status: int, message: str) -> Response:
    """WeChat's failure body; the status is what WeChat acts on."""
    response = jsonify(code="FAIL", message=message)
    response.status_code = status
    return response


@bp.post("/transaction")
def transaction() -> Response:
    for name in SIGNED_HEADERS:
        if len(request.headers.getlist(name)) > 1:
            return fail(400, f"header {name} given more than once")
    body = request.get_data(cache=False)
    headers = {name: request.headers[name] for name in SIGNED_HEADERS if name in request.headers}
    answer = receive_transaction_notification(current_app.extensions["lbpay.shop"], body, headers,
                                              ip=request.remote_addr)
    if answer.status == 204:
        return Response(status=204)
    return fail(answer.status, answer.message)
