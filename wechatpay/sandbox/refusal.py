"""The one way a simulated API call fails: an HTTP status with WeChat's error body."""

from __future__ import annotations

from typing import Any

# Messages WeChat uses for the codes the simulator can return (used when a fault names only a code).
DEFAULT_MESSAGES = {
    "PARAM_ERROR": "参数格式校验错误",
    "INVALID_REQUEST": "请求参数符合参数格式，但不符合业务规则",
    "SIGN_ERROR": "错误的签名，验签失败",
    "SYSTEM_ERROR": "系统错误",
    "FREQUENCY_LIMITED": "频率超限",
    "BANK_ERROR": "银行系统异常",
    "ORDER_NOT_EXIST": "订单不存在",
    "RESOURCE_NOT_EXISTS": "资源不存在",
    "ORDER_CLOSED": "订单已关闭",
    "NOT_ENOUGH": "基本账户余额不足，请充值后重新发起",
}


class Refusal(Exception):
    """WeChat Pay refuses the call with ``status`` and ``{"code", "message", "detail"}``."""

    def __init__(self, status: int, code: str, message: str | None = None, detail: Any = None) -> None:
        self.status = status
        self.code = code
        self.message = message or DEFAULT_MESSAGES.get(code, code)
        self.detail = detail
        super().__init__(f"{status} {code}: {self.message}")

    def body(self) -> dict[str, Any]:
        """Return the JSON error body as WeChat shapes it."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


def param_error(field: str, issue: str, value: Any = None, location: str = "body") -> Refusal:
    """Return a 400 PARAM_ERROR naming the offending field (``amount.total`` style)."""
    pointer = f"/{location}/" + field.replace(".", "/") if field else f"/{location}"
    detail: dict[str, Any] = {"field": pointer, "issue": issue, "location": location}
    if value is not None:
        detail["value"] = value
    return Refusal(400, "PARAM_ERROR", f"输入源“{pointer}”校验失败：{issue}", detail)
