"""WeChat Pay's refund notifications: kept raw, verified like payment ones, then handed to billing."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from billing.refunds import receive_refund_notification

from .notify import SIGNED_HEADERS, fail

bp = Blueprint("refund_notify", __name__, url_prefix="/wechatpay/notify")


@bp.post("/refund")
def refund() -> Response:
    for name in SIGNED_HEADERS:
        if len(request.headers.getlist(name)) > 1:
            return fail(400, f"header {name} given more than once")
    body = request.get_data(cache=False)
    headers = {name: request.headers[name] for name in SIGNED_HEADERS if name in request.headers}
    answer = receive_refund_notification(current_app.extensions["lbpay.shop"], body, headers,
                                         ip=request.remote_addr)
    if answer.status == 204:
        return Response(status=204)
    return fail(answer.status, answer.message)
