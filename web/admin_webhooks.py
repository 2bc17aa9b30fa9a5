"""The console's webhook pages under /admin/webhooks: add an endpoint, see its delivery log, send again."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from billing import webhooks

from . import current_shop
from .admin import _actor, bp

FORMAT_NAMES = {"standard": "签名 JSON · Signed JSON (Standard Webhooks)", "wecom": "企业微信群机器人 · WeCom group bot",
                "feishu": "飞书自定义机器人 · Feishu custom bot"}
EVENT_NAMES = {"order.paid": "订单已支付 Order paid", "license.issued": "许可证已发放 License issued",
               "refund.succeeded": "退款成功 Refund succeeded", "license.revoked": "许可证已撤销 License revoked",
               "complaint.created": "新投诉 Complaint created", "fapiao.requested": "开票申请 Fapiao requested",
               "webhook.test": "测试 Test"}


def _number(value: str) -> int:
    if not value.isdigit() or len(value) >= 12:
        abort(404)
    return int(value)


@bp.get("/webhooks")
def webhooks_list() -> str:
    return render_template("admin/webhooks.html", rows=webhooks.endpoints(), formats=FORMAT_NAMES,
                           events=EVENT_NAMES)


@bp.route("/webhooks/new", methods=["GET", "POST"])
def webhook_form() -> Any:
    if request.method != "POST":
        return render_template("admin/webhook_form.html", formats=FORMAT_NAMES, events=EVENT_NAMES,
                               all_events=webhooks.EVENTS)
    form = request.form
    made = webhooks.create_endpoint(current_shop(), url=form.get("url", ""), fmt=form.get("format", ""),
                                    events=form.getlist("events"), description=form.get("description", ""),
                                    bot_secret=form.get("bot_secret") or None, actor=_actor(),
                                    now=current_shop().now(), ip=request.remote_addr)
    flash("已添加。 Added.")
    return redirect(url_for("admin.webhook_detail", endpoint_id=made.endpoint.id), 303)


@bp.get("/webhooks/<endpoint_id>")
def webhook_detail(endpoint_id: str) -> str:
    endpoint = webhooks.find(_number(endpoint_id))
    return render_template("admin/webhook.html", e=endpoint, log=webhooks.deliveries(endpoint.id),
                           secret=webhooks.secret_of(current_shop(), endpoint), formats=FORMAT_NAMES,
                           events=EVENT_NAMES, backoff=webhooks.BACKOFF)


@bp.post("/webhooks/<endpoint_id>/enabled")
def webhook_enabled(endpoint_id: str) -> BaseResponse:
    on = request.form.get("enabled", "1") == "1"
    webhooks.set_enabled(_number(endpoint_id), on, actor=_actor(), now=current_shop().now(), ip=request.remote_addr)
    flash("已启用。 Enabled." if on else "已暂停：新的通知会等待。 Paused: new deliveries wait.")
    return redirect(url_for("admin.webhook_detail", endpoint_id=endpoint_id), 303)


@bp.post("/webhooks/<endpoint_id>/test")
def webhook_test(endpoint_id: str) -> BaseResponse:
    webhooks.send_test(current_shop(), _number(endpoint_id), actor=_actor(), now=current_shop().now(),
                       ip=request.remote_addr)
    flash("测试消息已排队，几秒内发出。 A test message is queued; it goes out within seconds.")
    return redirect(url_for("admin.webhook_detail", endpoint_id=endpoint_id), 303)


@bp.post("/webhooks/<endpoint_id>/delete")
def webhook_delete(endpoint_id: str) -> BaseResponse:
    webhooks.delete_endpoint(_number(endpoint_id), actor=_actor(), now=current_shop().now(), ip=request.remote_addr)
    flash("已删除。 Deleted.")
    return redirect(url_for("admin.webhooks_list"), 303)


@bp.post("/webhooks/deliveries/<delivery_id>/again")
def webhook_send_again(delivery_id: str) -> BaseResponse:
    again = webhooks.send_again(_number(delivery_id), actor=_actor(), now=current_shop().now(), ip=request.remote_addr)
    flash("已重新排队。 Queued again.")
    return redirect(url_for("admin.webhook_detail", endpoint_id=again.endpoint_id) + f"#d{again.id}", 303)
