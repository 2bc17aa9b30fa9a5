"""Input rules of the simulated endpoints (§4 of the protocol notes): JSON in, typed requests out."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .refusal import Refusal, param_error

OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-*]{6,32}")
OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class NativeOrderRequest:
    """A validated ``POST /v3/pay/transactions/native`` body."""

    appid: str
    mchid: str
    description: str
    out_trade_no: str
    notify_url: str
    total: int
    currency: str
    attach: str | None
    time_expire: float | None
    # The whole body, time_expire included: a repeat must be identical to get a current code_url.
    fingerprint: str


@dataclass(frozen=True)
class RefundRequest:
    """A validated ``POST /v3/refund/domestic/refunds`` body."""

    out_refund_no: str
    transaction_id: str | None
    out_trade_no: str | None
    reason: str | None
    notify_url: str | None
    refund: int
    total: int
    currency: str


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise param_error("", "请求体不是合法的JSON (body is not valid JSON)") from None
    if not isinstance(data, dict):
        raise param_error("", "请求体必须是JSON对象 (body must be a JSON object)")
    return data


def native_order(data: dict[str, Any], auth_mchid: str, appid: str) -> NativeOrderRequest:
    """Validate a Native order body for the merchant ``auth_mchid`` whose app is ``appid``."""
    req_appid = _string(data, "appid", max_len=32)
    mchid = _string(data, "mchid", max_len=32)
    description = _string(data, "description", max_len=127)
    out_trade_no = _string(data, "out_trade_no", max_len=32)
    if not OUT_TRADE_NO.fullmatch(out_trade_no):
        raise param_error("out_trade_no", "6-32位，只能是数字、大小写字母、_-* (6-32 of [0-9A-Za-z_-*])", out_trade_no)
    notify_url = _notify_url(data, "notify_url", required=True)
    assert notify_url is not None
    total, currency = _order_amount(data)
    attach = _string(data, "attach", max_len=128, required=False)
    _string(data, "goods_tag", max_len=32, required=False)
    if "support_fapiao" in data and not isinstance(data["support_fapiao"], bool):
        raise param_error("support_fapiao", "必须是布尔值 (must be a boolean)", data["support_fapiao"])
    for name in ("detail", "scene_info", "settle_info"):
        if name in data and not isinstance(data[name], dict):
            raise param_error(name, "必须是对象 (must be an object)")
    if "scene_info" in data:
        _string(data["scene_info"], "payer_client_ip", max_len=45, path="scene_info.payer_client_ip")
    time_expire = _time_expire(data)
    if mchid != auth_mchid:
        raise param_error("mchid", "与请求头Authorization中的商户号不一致 (differs from the Authorization mchid)", mchid)
    if req_appid != appid:
        raise Refusal(400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
    comparable = {k: v for k, v in data.items() if k != "time_expire"}
    comparable["amount"] = {**data["amount"], "currency": currency}
    comparable["time_expire"] = time_expire
    return NativeOrderRequest(
        appid=req_appid,
        mchid=mchid,
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        total=total,
        currency=currency,
        attach=attach,
        time_expire=time_expire,
        fingerprint=json.dumps(comparable, sort_keys=True, ensure_ascii=False),
    )


def refund(data: dict[str, Any]) -> RefundRequest:
    """Validate a domestic refund body."""
    out_refund_no = _string(data, "out_refund_no", max_len=64)
    if not OUT_REFUND_NO.fullmatch(out_refund_no):
        raise param_error("out_refund_no", "只能是数字、大小写字母、_-|*@ ([0-9A-Za-z_-|*@])", out_refund_no)
    transaction_id = _string(data, "transaction_id", max_len=32, required=False)
    out_trade_no = _string(data, "out_trade_no", max_len=32, required=False)
    if transaction_id is None and out_trade_no is None:
        raise param_error("out_trade_no", "transaction_id和out_trade_no必须二选一 (one of transaction_id/out_trade_no)")
    reason = _string(data, "reason", max_len=80, required=False)
    notify_url = _notify_url(data, "notify_url", required=False)
    if "funds_account" in data and data["funds_account"] not in ("AVAILABLE", "UNSETTLED"):
        raise param_error("funds_account", "取值只能是AVAILABLE或UNSETTLED", data["funds_account"])
    amount = data.get("amount")
    if not isinstance(amount, dict):
        raise param_error("amount", "必填，且必须是对象 (required object)")
    refund_fen = _positive_int(amount, "refund", "amount.refund")
    total = _positive_int(amount, "total", "amount.total")
    currency = _string(amount, "currency", max_len=16, path="amount.currency")
    if currency != "CNY":
        raise param_error("amount.currency", "境内退款币种只能是CNY (must be CNY)", currency)
    return RefundRequest(
        out_refund_no=out_refund_no,
        transaction_id=transaction_id,
        out_trade_no=out_trade_no,
        reason=reason,
        notify_url=notify_url,
        refund=refund_fen,
        total=total,
        currency=currency,
    )


def _string(
    data: dict[str, Any], name: str, *, max_len: int, required: bool = True, path: str | None = None
) -> Any:
    path = path or name
    value = data.get(name)
    if value is None:
        if required:
            raise param_error(path, "此字段为必填项 (required)")
        return None
    if not isinstance(value, str):
        raise param_error(path, "必须是字符串 (must be a string)", value)
    if required and not value:
        raise param_error(path, "不能为空 (must not be empty)", value)
    # WeChat accepts 1-3 byte UTF-8 characters only; emoji and other supplementary-plane ones are refused.
    if any(ord(char) > 0xFFFF or 0xD800 <= ord(char) <= 0xDFFF for char in value):
        raise param_error(path, "包含不支持的字符 (characters outside the basic plane are not accepted)", value)
    # string(N) counts UTF-8 bytes, not characters.
    size = len(value.encode("utf-8"))
    if size > max_len:
        raise param_error(path, f"字节数 {size},大于最大值 {max_len}", value)
    return value


def _positive_int(data: dict[str, Any], name: str, path: str) -> int:
    value = data.get(name)
    if value is None:
        raise param_error(path, "此字段为必填项 (required)")
    # bool is an int subclass in Python, but true is not an amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise param_error(path, "必须是整数 (must be an integer)", value)
    if value <= 0:
        raise param_error(path, "必须大于0 (must be greater than 0)", value)
    return value


def _order_amount(data: dict[str, Any]) -> tuple[int, str]:
    amount = data.get("amount")
    if not isinstance(amount, dict):
        raise param_error("amount", "必填，且必须是对象 (required object)")
    total = _positive_int(amount, "total", "amount.total")
    currency = _string(amount, "currency", max_len=16, required=False, path="amount.currency")
    if currency is not None and currency != "CNY":
        raise param_error("amount.currency", "境内商户币种只能是CNY (must be CNY)", currency)
    return total, currency or "CNY"


def _notify_url(data: dict[str, Any], name: str, *, required: bool) -> str | None:
    url = _string(data, name, max_len=256, required=required)
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise param_error(name, "必须是https开头的绝对地址 (must be an absolute https URL)", url)
    if parts.query or parts.fragment or "?" in url:
        raise param_error(name, "不能携带参数 (must not carry a query string)", url)
    return url


def _time_expire(data: dict[str, Any]) -> float | None:
    value = _string(data, "time_expire", max_len=64, required=False)
    if value is None:
        return None
    issue = "必须是RFC3339格式且带时区，如2018-06-08T10:34:56+08:00 (RFC 3339 with offset)"
    if not RFC3339.fullmatch(value):
        raise param_error("time_expire", issue, value)
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise param_error("time_expire", issue, value) from None
