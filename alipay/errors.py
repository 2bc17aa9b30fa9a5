"""Typed errors raised by the Alipay protocol code."""

from __future__ import annotations


class AlipayError(Exception):
    """Base class of every error raised by this package."""

    retryable: bool = False


class ConfigError(AlipayError):
    """A key, certificate or setting is missing or unusable; raised at start-up, naming it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class VerificationError(AlipayError):
    """A signed message (gateway answer or notification) could not be authenticated.

    ``reason`` is a short stable word: ``missing_signature``, ``bad_signature``,
    ``bad_sign_type``, ``unknown_cert``, ``no_response_node``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MismatchError(AlipayError):
    """A verified notification or answer is about another app, seller, order or amount than ours.

    ``field`` names what differs: ``app_id``, ``seller_id``, ``out_trade_no``,
    ``total_amount``, ``trade_status`` or ``notify_type``.
    """

    def __init__(self, field: str, detail: str = "") -> None:
        super().__init__(f"{field}: {detail}" if detail else field)
        self.field = field
        self.detail = detail


class MalformedError(AlipayError):
    """A verified message did not have the expected shape (a missing field, an amount that is not yuan)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# What an ApiError means for the caller; see ApiError.kind (the same three words as wechatpay's).
KIND_UNAVAILABLE = "unavailable"
KIND_CONFIG = "config"
KIND_REJECTED = "rejected"

# Gateway codes (公共错误码): 20000 service unavailable, 20001 authorization, 40001 missing parameter,
# 40002 invalid parameter, 40004 business failure (see sub_code), 40006 insufficient permissions.
RETRYABLE_CODES = frozenset({"20000"})
CONFIG_CODES = frozenset({"20001", "40001", "40002", "40006"})
# Business sub-codes that pass with time: Alipay's own trouble, never the order's or the shop's.
RETRYABLE_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.ACQ.SYSTEM_ERROR"})
# Business sub-codes that say the shop's account or contract is wrong: waiting cannot help.
CONFIG_SUB_CODES = frozenset({
    "ACQ.ACCESS_FORBIDDEN", "ACQ.PARTNER_ERROR", "ACQ.SELLER_BEEN_BLOCKED", "ACQ.SELLER_NOT_EXIST",
    "ACQ.INVALID_PARAMETER", "ACQ.TOTAL_FEE_EXCEED", "ACQ.CONTEXT_INCONSISTENT",
})


class ApiError(AlipayError):
    """The gateway answered with a code other than 10000.

    ``kind`` says what it means for the caller: ``unavailable`` (20000, ACQ.SYSTEM_ERROR, HTTP
    5xx: retry later with the same ``out_trade_no``), ``config`` (a bad parameter, signature or
    contract: the shop must fix something) or ``rejected`` (a valid request refused by the
    trade's state: ACQ.TRADE_NOT_EXIST, ACQ.TRADE_STATUS_ERROR…). ``signed`` tells whether the
    answer carried a verified signature; an unsigned error is only ever a reason to do nothing.
    """

    def __init__(self, code: str, msg: str, sub_code: str = "", sub_msg: str = "",
                 *, signed: bool = False, status: int = 200) -> None:
        text = f"{code} {msg}" + (f" / {sub_code} {sub_msg}" if sub_code else "")
        super().__init__(text)
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg
        self.signed = signed
        self.status = status
        self.retryable = code in RETRYABLE_CODES or sub_code in RETRYABLE_SUB_CODES or status >= 500
        if self.retryable:
            self.kind = KIND_UNAVAILABLE
        elif code in CONFIG_CODES or sub_code in CONFIG_SUB_CODES:
            self.kind = KIND_CONFIG
        else:
            self.kind = KIND_REJECTED

    @property
    def is_config_error(self) -> bool:
        """Tell whether the shop's configuration or data must change before this call can succeed."""
        return self.kind == KIND_CONFIG


class TransportError(AlipayError):
    """The call got no answer (timeout, connection reset, DNS); safe to retry with the same ids."""

    retryable = True


class NoBill(ApiError):
    """Alipay has no bill for that day (40004 isp.bill_not_exist): nothing happened, or asked too early."""
