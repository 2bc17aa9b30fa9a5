// Every error a learner can meet while buying, in Chinese and English with its next step.
//
// SERVER_ERRORS mirrors billing/errors.py code by code (tests/test_vscode_kit.py compares them), so the
// panel can explain a code even when the server's own words did not arrive (network down, old server).

/** What the learner should do next; the same names as the server's `action` field. */
export type ErrorAction = 'retry' | 'retry_later' | 'new_order' | 'contact_support' | 'fix_request' | 'none';

/** The words for one error code and its next step. */
export interface ErrorText {
  status: number;
  zh: string;
  en: string;
  action: ErrorAction;
}

/** The server's catalogue (billing/errors.py). */
export const SERVER_ERRORS: Readonly<Record<string, ErrorText>> = {
  bad_request: { status: 400, zh: "请求格式不正确。",
    en: "The request is malformed.", action: 'fix_request' },
  course_not_found: { status: 404, zh: "该课程不存在或已停止销售。",
    en: "This course does not exist or is not for sale.", action: 'none' },
  not_found: { status: 404, zh: "页面或资源不存在。",
    en: "There is nothing at this address.", action: 'none' },
  buyer_token_invalid: { status: 401, zh: "购买者凭证无效，请不带凭证重新下单。",
    en: "The buyer token is not valid; place the order again without it.", action: 'fix_request' },
  unauthorized: { status: 401, zh: "缺少或无效的访问凭证。",
    en: "Missing or invalid credentials.", action: 'fix_request' },
  order_not_found: { status: 404, zh: "订单不存在，或访问凭证不匹配。",
    en: "No such order, or the order token does not match.", action: 'none' },
  order_closed: { status: 409, zh: "订单已关闭，请重新下单。",
    en: "This order is closed; please place a new order.", action: 'new_order' },
  order_expired: { status: 409, zh: "订单已过期，请重新下单。",
    en: "This order has expired; please place a new order.", action: 'new_order' },
  order_already_paid: { status: 409, zh: "订单已支付，无法取消；许可证即将发放。",
    en: "This order is already paid and cannot be cancelled; the license is on its way.", action: 'none' },
  wechat_unavailable: { status: 503, zh: "微信支付暂时无法访问，请稍后重试。",
    en: "WeChat Pay is unavailable right now; please try again shortly.", action: 'retry_later' },
  shop_setup_error: { status: 503, zh: "本店的微信支付设置有误，暂时无法下单；店主已收到通知，请稍后联系客服。",
    en: "The shop's WeChat Pay setup needs fixing before this can be paid; the shop has been told. Contact support if it lasts.", action: 'contact_support' },
  amount_mismatch: { status: 200, zh: "支付金额与订单不符，正在人工核对，请联系客服并提供订单号。",
    en: "The amount paid does not match the order; it is under review. Contact support with your order id.", action: 'contact_support' },
  late_payment: { status: 200, zh: "订单关闭后收到付款，正在人工处理，请联系客服并提供订单号。",
    en: "A payment arrived after the order was closed; it is being handled by hand. Contact support with your order id.", action: 'contact_support' },
  already_licensed: { status: 409, zh: "你已拥有该课程的有效许可证，无需再次购买。",
    en: "You already hold a valid license for this course; there is nothing to pay.", action: 'none' },
  idempotency_key_reused: { status: 422, zh: "该幂等键已用于另一个请求。",
    en: "This Idempotency-Key was already used for a different request.", action: 'fix_request' },
  idempotency_key_conflict: { status: 409, zh: "该幂等键属于另一位购买者的请求。",
    en: "This Idempotency-Key belongs to another buyer's request; use a fresh random key.", action: 'fix_request' },
  too_many_pending_orders: { status: 429, zh: "未支付的订单过多，请先完成或取消已有订单，或稍后再试。",
    en: "Too many unpaid orders; pay or cancel one first, or try again later.", action: 'retry_later' },
  payment_failed: { status: 200, zh: "支付未成功（例如零钱余额不足），请换一张卡或稍后再试，订单仍然有效。",
    en: "The payment did not go through (for example, insufficient balance); try another card or try again, the order is still open.", action: 'retry' },
  payment_cancelled: { status: 200, zh: "订单已取消，如仍想购买请重新下单。",
    en: "The order was cancelled; place a new order if you still want the course.", action: 'new_order' },
  license_delayed: { status: 200, zh: "已收到付款，许可证生成稍有延迟，请稍候，无需再次付款。",
    en: "Your payment arrived; the license is taking a little longer. Please wait, do not pay again.", action: 'retry_later' },
  refunded: { status: 200, zh: "该订单已退款，许可证已失效；如有疑问请联系客服并提供订单号。",
    en: "This order was refunded and its license no longer works; contact support with your order id if this is unexpected.", action: 'contact_support' },
  license_not_found: { status: 404, zh: "没有这个许可证。",
    en: "There is no license with this id.", action: 'none' },
  rate_limited: { status: 429, zh: "请求过于频繁，请稍后再试。",
    en: "Too many requests; please wait and try again.", action: 'retry_later' },
  payload_too_large: { status: 413, zh: "请求内容过大。",
    en: "The request body is too large.", action: 'fix_request' },
  internal_error: { status: 500, zh: "服务器内部错误，请稍后重试；若持续出现请联系客服。",
    en: "Internal server error; please retry later, and contact support if it persists.", action: 'retry_later' },
  service_busy: { status: 503, zh: "服务繁忙，请稍后重试。",
    en: "The service is busy; please try again shortly.", action: 'retry_later' },
  refund_not_allowed: { status: 409, zh: "该订单当前不能退款。",
    en: "This order cannot be refunded now.", action: 'none' },
  refund_too_large: { status: 409, zh: "退款金额超过可退金额。",
    en: "The refund is more than what is left to refund.", action: 'fix_request' },
  reason_required: { status: 400, zh: "请填写原因。",
    en: "A reason is required.", action: 'fix_request' },
  not_paid_at_wechat: { status: 409, zh: "微信支付显示该订单未支付。",
    en: "WeChat Pay says this order is not paid.", action: 'none' },
  order_has_no_license: { status: 404, zh: "该订单没有许可证。",
    en: "This order has no license.", action: 'none' },
  code_not_found: { status: 404, zh: "优惠码不存在，请检查拼写。",
    en: "There is no such discount code; check its spelling.", action: 'fix_request' },
  code_not_started: { status: 409, zh: "优惠码尚未生效，请在活动开始后再用。",
    en: "This discount code is not valid yet; use it once the offer starts.", action: 'retry_later' },
  code_expired: { status: 409, zh: "优惠码已过期或已停用。",
    en: "This discount code has expired or been paused.", action: 'fix_request' },
  code_exhausted: { status: 409, zh: "优惠码已被用完。",
    en: "This discount code has been used up.", action: 'fix_request' },
  code_wrong_course: { status: 409, zh: "该优惠码不适用于这门课程。",
    en: "This discount code is not for this course.", action: 'fix_request' },
  code_already_used: { status: 409, zh: "你已经用过这个优惠码（每人限用一次）。",
    en: "You have already used this code (one use per buyer).", action: 'fix_request' },
  price_changed: { status: 409, zh: "首发价名额刚刚售完，请重新下单查看当前价格。",
    en: "The launch price just sold out; place the order again to see the current price.", action: 'new_order' },
};

/** Failures only the extension can see: they never come from the server. */
export const KIT_ERRORS: Readonly<Record<string, ErrorText>> = {
  network_unreachable: { status: 0, zh: "无法连接到服务器，请检查网络后重试。",
    en: "The server cannot be reached; check your network and try again.", action: 'retry' },
  license_invalid: { status: 0, zh: "收到的许可证无法验证，请联系客服并提供订单号。",
    en: "The license received does not verify; contact support with your order id.", action: 'contact_support' },
  license_revoked: { status: 0, zh: "该许可证已被撤销（例如已退款），无法激活。",
    en: "This license has been revoked (for example, refunded) and cannot be activated.", action: 'contact_support' },
};

/** The next step, as the learner reads it on a button or beside the message. */
export const ACTION_TEXT: Readonly<Record<ErrorAction, { zh: string; en: string }>> = {
  retry: { zh: '重试', en: 'Try again' },
  retry_later: { zh: '稍后重试', en: 'Try again in a moment' },
  new_order: { zh: '重新下单', en: 'Place a new order' },
  contact_support: { zh: '联系客服（请提供订单号）', en: 'Contact support with your order id' },
  fix_request: { zh: '请更新扩展后再试', en: 'Update the extension and try again' },
  none: { zh: '无需操作', en: 'Nothing to do' },
};

/** A shown error: the code, both languages and the next step. */
export interface ShownError {
  code: string;
  message_zh: string;
  message_en: string;
  action: ErrorAction;
}

/** The words for a code; an unknown code is shown as an internal error rather than hidden. */
export function describeError(code: string, fromServer?: Partial<ShownError> | null): ShownError {
  const known = SERVER_ERRORS[code] || KIT_ERRORS[code] || SERVER_ERRORS.internal_error;
  return {
    code,
    message_zh: (fromServer && fromServer.message_zh) || known.zh,
    message_en: (fromServer && fromServer.message_en) || known.en,
    action: (fromServer && (fromServer.action as ErrorAction)) || known.action,
  };
}
