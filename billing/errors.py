"""The errors a learner or the extension can meet, each with words and a next step."""

from __future__ import annotations

from dataclasses import dataclass

from wechatpay.errors import ApiError, WeChatPayError


@dataclass(frozen=True)
class ErrorText:
    """How one error code is shown: HTTP status, Chinese and English words, and what to do."""

    status: int
    message_zh: str
    message_en: str
    action: str  # retry | retry_later | new_order | contact_support | fix_request | none


CATALOGUE: dict[str, ErrorText] = {
    "bad_request": ErrorText(
        400, "请求格式不正确。", "The request is malformed.", "fix_request"
    ),
    "course_not_found": ErrorText(
        404, "该课程不存在或已停止销售。", "This course does not exist or is not for sale.", "none"
    ),
    "not_found": ErrorText(
        404, "页面或资源不存在。", "There is nothing at this address.", "none"
    ),
    "buyer_token_invalid": ErrorText(
        401,
        "购买者凭证无效，请不带凭证重新下单。",
        "The buyer token is not valid; place the order again without it.",
        "fix_request",
    ),
    "unauthorized": ErrorText(
        401, "缺少或无效的访问凭证。", "Missing or invalid credentials.", "fix_request"
    ),
    "order_not_found": ErrorText(
        404, "订单不存在，或访问凭证不匹配。", "No such order, or the order token does not match.", "none"
    ),
    "order_closed": ErrorText(
        409, "订单已关闭，请重新下单。", "This order is closed; please place a new order.", "new_order"
    ),
    "order_expired": ErrorText(
        409, "订单已过期，请重新下单。", "This order has expired; please place a new order.", "new_order"
    ),
    "order_already_paid": ErrorText(
        409,
        "订单已支付，无法取消；许可证即将发放。",
        "This order is already paid and cannot be cancelled; the license is on its way.",
        "none",
    ),
    "wechat_unavailable": ErrorText(
        503,
        "微信支付暂时无法访问，请稍后重试。",
        "WeChat Pay is unavailable right now; please try again shortly.",
        "retry_later",
    ),
    "alipay_unavailable": ErrorText(
        503,
        "支付宝暂时无法访问，请稍后重试，或换一种支付方式。",
        "Alipay is unavailable right now; please try again shortly, or pay another way.",
        "retry_later",
    ),
    "alipay_setup_error": ErrorText(
        503,
        "本店的支付宝设置有误，暂时无法用支付宝下单；店主已收到通知，可先换一种支付方式。",
        "The shop's Alipay setup needs fixing before Alipay can be used; the shop has been told. Pay another way meanwhile.",
        "contact_support",
    ),
    "shop_setup_error": ErrorText(
        503,
        "本店的微信支付设置有误，暂时无法下单；店主已收到通知，请稍后联系客服。",
        "The shop's WeChat Pay setup needs fixing before this can be paid; the shop has been told. "
        "Contact support if it lasts.",
        "contact_support",
    ),
    "amount_mismatch": ErrorText(
        200,
        "支付金额与订单不符，正在人工核对，请联系客服并提供订单号。",
        "The amount paid does not match the order; it is under review. Contact support with your order id.",
        "contact_support",
    ),
    "late_payment": ErrorText(
        200,
        "订单关闭后收到付款，正在人工处理，请联系客服并提供订单号。",
        "A payment arrived after the order was closed; it is being handled by hand. "
        "Contact support with your order id.",
        "contact_support",
    ),
    "already_licensed": ErrorText(
        409,
        "你已拥有该课程的有效许可证，无需再次购买。",
        "You already hold a valid license for this course; there is nothing to pay.",
        "none",
    ),
    "idempotency_key_reused": ErrorText(
        422,
        "该幂等键已用于另一个请求。",
        "This Idempotency-Key was already used for a different request.",
        "fix_request",
    ),
    "idempotency_key_conflict": ErrorText(
        409,
        "该幂等键属于另一位购买者的请求。",
        "This Idempotency-Key belongs to another buyer's request; use a fresh random key.",
        "fix_request",
    ),
    "too_many_pending_orders": ErrorText(
        429,
        "未支付的订单过多，请先完成或取消已有订单，或稍后再试。",
        "Too many unpaid orders; pay or cancel one first, or try again later.",
        "retry_later",
    ),
    # The learner's side: payment outcomes, license delivery and lookup.
    "payment_failed": ErrorText(
        200,
        "支付未成功（例如零钱余额不足），请换一张卡或稍后再试，订单仍然有效。",
        "The payment did not go through (for example, insufficient balance); try another card "
        "or try again, the order is still open.",
        "retry",
    ),
    "payment_cancelled": ErrorText(
        200,
        "订单已取消，如仍想购买请重新下单。",
        "The order was cancelled; place a new order if you still want the course.",
        "new_order",
    ),
    "license_delayed": ErrorText(
        200,
        "已收到付款，许可证生成稍有延迟，请稍候，无需再次付款。",
        "Your payment arrived; the license is taking a little longer. Please wait, do not pay again.",
        "retry_later",
    ),
    "refunded": ErrorText(
        200,
        "该订单已退款，许可证已失效；如有疑问请联系客服并提供订单号。",
        "This order was refunded and its license no longer works; contact support with your order id "
        "if this is unexpected.",
        "contact_support",
    ),
    "payment_refunded": ErrorText(
        200,
        "这笔付款已在微信支付退回，未发放许可证；如有疑问请联系客服并提供订单号。",
        "This payment was refunded through WeChat Pay, so no license was issued; contact support with your "
        "order id if this is unexpected.",
        "contact_support",
    ),
    "payment_refunded_at_alipay": ErrorText(
        200,
        "这笔付款已在支付宝退回，未发放许可证；如有疑问请联系客服并提供订单号。",
        "This payment was refunded through Alipay, so no license was issued; contact support with your "
        "order id if this is unexpected.",
        "contact_support",
    ),
    "license_not_found": ErrorText(
        404, "没有这个许可证。", "There is no license with this id.", "none"
    ),
    "rate_limited": ErrorText(
        429, "请求过于频繁，请稍后再试。", "Too many requests; please wait and try again.", "retry_later"
    ),
    "payload_too_large": ErrorText(
        413, "请求内容过大。", "The request body is too large.", "fix_request"
    ),
    "internal_error": ErrorText(
        500,
        "服务器内部错误，请稍后重试；若持续出现请联系客服。",
        "Internal server error; please retry later, and contact support if it persists.",
        "retry_later",
    ),
    "service_busy": ErrorText(
        503, "服务繁忙，请稍后重试。", "The service is busy; please try again shortly.", "retry_later"
    ),    # The creator's console.
    "refund_not_allowed": ErrorText(
        409, "该订单当前不能退款。", "This order cannot be refunded now.", "none"
    ),
    "refund_too_large": ErrorText(
        409, "退款金额超过可退金额。", "The refund is more than what is left to refund.", "fix_request"
    ),
    "reason_required": ErrorText(
        400, "请填写原因。", "A reason is required.", "fix_request"
    ),
    "not_paid_at_wechat": ErrorText(
        409, "微信支付显示该订单未支付。", "WeChat Pay says this order is not paid.", "none"
    ),
    "not_paid_at_alipay": ErrorText(
        409, "支付宝显示该订单未支付。", "Alipay says this order is not paid.", "none"
    ),
    "order_has_no_license": ErrorText(
        404, "该订单没有许可证。", "This order has no license.", "none"
    ),
    # Discount codes and launch prices.
    "code_not_found": ErrorText(
        404, "优惠码不存在，请检查拼写。", "There is no such discount code; check its spelling.", "fix_request"
    ),
    "code_not_started": ErrorText(
        409, "优惠码尚未生效，请在活动开始后再用。", "This discount code is not valid yet; use it once the offer starts.",
        "retry_later",
    ),
    "code_expired": ErrorText(
        409, "优惠码已过期或已停用。", "This discount code has expired or been paused.", "fix_request"
    ),
    "code_exhausted": ErrorText(
        409, "优惠码已被用完。", "This discount code has been used up.", "fix_request"
    ),
    "code_wrong_course": ErrorText(
        409, "该优惠码不适用于这门课程。", "This discount code is not for this course.", "fix_request"
    ),
    "code_already_used": ErrorText(
        409, "你已经用过这个优惠码（每人限用一次）。", "You have already used this code (one use per buyer).",
        "fix_request",
    ),
    "payment_method_unavailable": ErrorText(
        422, "本店暂不支持这种支付方式，请选择其他方式付款。",
        "This shop does not take that payment method; please choose another one.", "fix_request",
    ),
    "price_changed": ErrorText(
        409, "首发价名额刚刚售完，请重新下单查看当前价格。",
        "The launch price just sold out; place the order again to see the current price.", "new_order"
    ),
    # Classroom seats (billing/seats.py).
    "seats_not_offered": ErrorText(
        409, "该课程不提供多座位购买。", "This course is not sold in packs of seats.", "none"
    ),
    "seats_invalid": ErrorText(
        400, "座位数必须是整数，并在该课程允许的范围内。",
        "The number of seats must be a whole number within the range this course allows.", "fix_request"
    ),
    "seats_need_email": ErrorText(
        400, "购买多个座位需要填写邮箱，座位管理链接会发到这个邮箱。",
        "A pack of seats needs an e-mail address: the seat page link is sent there.", "fix_request"
    ),
    "seats_no_code": ErrorText(
        400, "多座位购买不能使用优惠码。", "Discount codes do not apply to packs of seats.", "fix_request"
    ),
    "seat_pack_not_found": ErrorText(
        404, "座位页面不存在，或链接不完整。", "No such seat page, or the link is incomplete.", "none"
    ),
    "seat_pack_not_paid": ErrorText(
        409, "座位包尚未付款；付款后才能分配座位。", "This pack is not paid yet; seats can be assigned once it is.",
        "retry_later"
    ),
    "seat_pack_refunded": ErrorText(
        409, "座位包已全额退款，座位不能再使用。", "This pack was refunded in full; its seats can no longer be used.",
        "none"
    ),
    "seats_full": ErrorText(
        409, "空余座位不够了。", "There are not enough free seats left in this pack.", "none"
    ),
    "seat_email_invalid": ErrorText(
        400, "邮箱地址无效，请检查后重试。", "An e-mail address is not valid; check it and try again.", "fix_request"
    ),
    "seat_email_taken": ErrorText(
        409, "这个邮箱在本座位包中已经有一个座位。", "This e-mail already has a seat in this pack.", "fix_request"
    ),
    "seat_not_found": ErrorText(
        404, "本座位包中没有这个座位。", "There is no such seat in this pack.", "none"
    ),
    "seat_not_assigned": ErrorText(
        409, "该座位尚未分配，无法转让。", "This seat is not assigned, so it cannot be moved.", "none"
    ),
    "seat_already_moved": ErrorText(
        409, "该座位已转让过一次，不能再次转让。", "This seat was moved once already; it cannot move again.", "none"
    ),
    "seat_withdrawn": ErrorText(
        409, "该座位已退款或正在退款，不能再使用。", "This seat is refunded or being refunded; it can no longer be used.",
        "none"
    ),
    "pack_refund_by_seats": ErrorText(
        409, "座位包的部分退款须按座位进行：请在座位包页面选择要退的座位。",
        "A partial refund of a pack is made by seats: choose them on the pack's console page.", "fix_request"
    ),
}


class BillingError(Exception):
    """A failure with a code from the catalogue; ``retry_after`` in seconds where waiting helps."""

    def __init__(self, code: str, detail: str = "", retry_after: int | None = None,
                 extra: dict[str, object] | None = None) -> None:
        if code not in CATALOGUE:
            raise KeyError(code)
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.extra = extra or {}

    @property
    def status(self) -> int:
        """The HTTP status this error is answered with."""
        return CATALOGUE[self.code].status


def paid_with_alipay(out_trade_no: str | None) -> bool:
    """Whether an order number is an Alipay order's (billing.alipay_method.method_of, without importing it here)."""
    from .alipay_method import ALIPAY, method_of

    return method_of(out_trade_no or "") == ALIPAY


def wechat_unavailable(exc: WeChatPayError, out_trade_no: str | None = None) -> BillingError:
    """Billing's own error for a failed payment call the creator made: the code the service gave, or the failure's kind.

    Named after the method of the order the call was about: an Alipay order's is ``alipay_unavailable``.
    """
    detail = f"{exc.code}: {exc.message}" if isinstance(exc, ApiError) else type(exc).__name__
    return BillingError("alipay_unavailable" if paid_with_alipay(out_trade_no) else "wechat_unavailable", detail)


def error_body(code: str, detail: str = "") -> dict[str, object]:
    """Return the ``{"error": {...}}`` body for a catalogued code."""
    text = CATALOGUE[code]
    body: dict[str, object] = {
        "code": code,
        "message_zh": text.message_zh,
        "message_en": text.message_en,
        "action": text.action,
    }
    if detail:
        body["detail"] = detail
    return {"error": body}
