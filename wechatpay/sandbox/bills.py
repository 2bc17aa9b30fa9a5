"""The simulator's daily trade bill (交易账单, ALL), written from its own ledger in WeChat's format.

Format facts (header line, backtick-prefixed fields, the 总交易单数 summary) follow
what the official SDKs parse; the content of refund lines (which amounts WeChat repeats
there) is our best understanding, noted as unverified in the protocol notes. Tests plant
differences (``bill_plants``) to see a reconciliation find them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from wechatpay.bills import format_fen

from .refusal import Refusal

if TYPE_CHECKING:
    from .state import SandboxState

CHINA = dt.timezone(dt.timedelta(hours=8))
HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
          "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
          "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
FEE_RATE = Decimal("0.006")
PLANT_KINDS = ("unknown_payment", "amount", "missing_payment", "unknown_refund", "missing_refund", "corrupt_hash")


def day_of(timestamp: float) -> dt.date:
    """The Beijing calendar day of a Unix time."""
    return dt.datetime.fromtimestamp(timestamp, CHINA).date()


def ready_at(day: dt.date, ready_after: float) -> float:
    """When the bill of ``day`` is published: the Beijing day's end plus ``ready_after`` seconds."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), CHINA)
    return end.timestamp() + ready_after


def _fee(fen: int) -> Decimal:
    # Fen → yuan, times the rate, kept to five decimals as the bill writes fees.
    return (Decimal(fen) / 100 * FEE_RATE).quantize(Decimal("0.00001"))


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, CHINA).strftime("%Y-%m-%d %H:%M:%S")


def _line(fields: list[str]) -> str:
    return ",".join("`" + field for field in fields)


def _payment(state: SandboxState, when: float, transaction_id: str, out_trade_no: str, openid: str,
             total: int, description: str, attach: str) -> dict[str, Any]:
    config = state.config
    return {"when": when, "fields": [
        _when(when), config.appid, config.mchid, "0", "", transaction_id, out_trade_no, openid, "NATIVE",
        "SUCCESS", "OTHERS", "CNY", format_fen(total), "0.00", "0", "0", "0.00", "0.00", "", "",
        description, attach, str(_fee(total)), "0.60%", format_fen(total), "0.00", ""],
        "settlement": total, "refund": 0, "fee": _fee(total), "total": total}


def _refund(state: SandboxState, when: float, transaction_id: str, out_trade_no: str, openid: str, total: int,
            refund_id: str, out_refund_no: str, amount: int, description: str, attach: str) -> dict[str, Any]:
    config = state.config
    fee = -_fee(amount)
    return {"when": when, "fields": [
        _when(when), config.appid, config.mchid, "0", "", transaction_id, out_trade_no, openid, "NATIVE",
        "REFUND", "OTHERS", "CNY", "0.00", "0.00", refund_id, out_refund_no, format_fen(amount), "0.00",
        "ORIGINAL", "SUCCESS", description, attach, str(fee), "0.60%", format_fen(total), format_fen(amount), ""],
        "settlement": 0, "refund": amount, "fee": fee, "total": 0}


def _digits(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def build_trade_bill(state: SandboxState, day: dt.date) -> tuple[str, bool]:
    """Return the ALL trade bill of ``day`` as text, and whether its hash should be corrupted."""
    with state.lock:
        plants = list(state.bill_plants)
        drop_payments = {p["out_trade_no"] for p in plants if p["kind"] == "missing_payment"}
        drop_refunds = {p["out_refund_no"] for p in plants if p["kind"] == "missing_refund"}
        amounts = {p["out_trade_no"]: p["total"] for p in plants if p["kind"] == "amount"}
        lines: list[dict[str, Any]] = []
        for order in state.orders.values():
            if order.success_time is None or day_of(order.success_time) != day:
                continue
            if order.out_trade_no in drop_payments:
                continue
            assert order.transaction_id is not None
            lines.append(_payment(state, order.success_time, order.transaction_id, order.out_trade_no,
                                  order.openid or "", amounts.get(order.out_trade_no, order.total),
                                  order.request.description, order.request.attach or ""))
        for refund in state.refunds.values():
            if refund.status != "SUCCESS" or refund.success_time is None or day_of(refund.success_time) != day:
                continue
            if refund.out_refund_no in drop_refunds:
                continue
            order = state.orders[refund.out_trade_no]
            lines.append(_refund(state, refund.success_time, refund.transaction_id, refund.out_trade_no,
                                 order.openid or "", refund.total, refund.refund_id, refund.out_refund_no,
                                 refund.request.refund, order.request.description, order.request.attach or ""))
        for plant in plants:
            if plant.get("date") != day.isoformat():
                continue
            if plant["kind"] == "unknown_payment":
                lines.append(_payment(state, plant["when"], plant["transaction_id"], plant["out_trade_no"],
                                      "o" + "x" * 27, plant["total"], plant.get("description", "未知商品"), ""))
            elif plant["kind"] == "unknown_refund":
                lines.append(_refund(state, plant["when"], plant["transaction_id"], plant["out_trade_no"],
                                     "o" + "x" * 27, plant["order_total"], plant["refund_id"],
                                     plant["out_refund_no"], plant["refund"], "", ""))
        corrupt = any(p["kind"] == "corrupt_hash" for p in plants)
    lines.sort(key=lambda item: item["when"])
    summary = [
        str(len(lines)),
        format_fen(sum(item["settlement"] for item in lines)),
        format_fen(sum(item["refund"] for item in lines)),
        "0.00",
        str(sum((item["fee"] for item in lines), Decimal("0.00000"))),
        format_fen(sum(item["total"] for item in lines)),
        format_fen(sum(item["refund"] for item in lines)),
    ]
    text = "\r\n".join([HEADER, *(_line(item["fields"]) for item in lines), SUMMARY_HEADER, _line(summary)]) + "\r\n"
    return text, corrupt


def plant(state: SandboxState, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate and keep one planted difference; return it as stored."""
    kind = payload.get("kind")
    if kind not in PLANT_KINDS:
        raise ValueError("kind must be one of " + ", ".join(PLANT_KINDS))
    now = state.now()
    entry: dict[str, Any] = {"kind": kind}

    def text(name: str) -> str:
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
        return value

    def fen(name: str) -> int:
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer of fen")
        return value

    date = payload.get("date", day_of(now).isoformat())
    try:
        dt.date.fromisoformat(date)
    except (TypeError, ValueError):
        raise ValueError("date must be YYYY-MM-DD") from None
    if kind == "unknown_payment":
        entry.update(date=date, total=fen("total"), when=now,
                     out_trade_no=payload.get("out_trade_no") or "LBX" + _digits(16),
                     transaction_id="4200" + date.replace("-", "") + _digits(20))
        if "description" in payload:  # as written into the bill, unescaped (a ",`" inside breaks the line)
            entry["description"] = text("description")
    elif kind == "amount":
        entry.update(out_trade_no=text("out_trade_no"), total=fen("total"))
    elif kind == "missing_payment":
        entry.update(out_trade_no=text("out_trade_no"))
    elif kind == "missing_refund":
        entry.update(out_refund_no=text("out_refund_no"))
    elif kind == "unknown_refund":
        with state.lock:
            order = state.orders.get(text("out_trade_no"))
        if order is None or order.transaction_id is None:
            raise ValueError("unknown_refund needs a paid out_trade_no")
        entry.update(date=date, when=now, out_trade_no=order.out_trade_no, transaction_id=order.transaction_id,
                     order_total=order.total, refund=fen("refund"),
                     out_refund_no=payload.get("out_refund_no") or "RFX" + _digits(16),
                     refund_id="50" + _digits(27))
    with state.lock:
        state.bill_plants.append(entry)
    return entry


def refuse_unless_published(state: SandboxState, day: dt.date) -> None:
    """Answer as WeChat does for a bill that cannot be had yet."""
    now = state.now()
    if day >= day_of(now) + dt.timedelta(days=1):
        raise Refusal(400, "INVALID_REQUEST", "请检查bill_date", {"field": "bill_date"})
    if now < ready_at(day, state.bill_ready_after):
        raise Refusal(400, "STATEMENT_CREATING", "账单生成中")
