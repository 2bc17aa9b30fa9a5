"""Alipay's asynchronous notifications: a form POST handed to billing to verify, answered ``success`` or refused."""

from __future__ import annotations

from flask import Blueprint, Response, request

from billing.alipay_method import AlipayNotificationRefused, receive_alipay_notification

from . import current_shop

bp = Blueprint("notify_alipay", __name__, url_prefix="/alipay/notify")


@bp.post("/trade")
def trade() -> Response:
    body = request.get_data(cache=False)
    try:
        answer = receive_alipay_notification(current_shop(), body, request.remote_addr)
    except AlipayNotificationRefused as exc:
        # Anything but the literal "success" makes Alipay send again (8 times in 25 hours).
        return Response(f"fail: {exc.reason}", status=exc.status, content_type="text/plain; charset=utf-8")
    return Response(answer, status=200, content_type="text/plain; charset=utf-8")
