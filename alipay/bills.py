"""Alipay's daily trade bill (业务明细): a zip of GBK CSV files, read into rows of fen and checked against its own totals."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime

from .amounts import yuan_to_fen
from .client import parse_beijing_time
from .errors import MalformedError

HEADER_FIRST = "支付宝交易号"
DETAIL_MARK = "业务明细"
SUMMARY_MARK = "汇总"
TRADE = "交易"
REFUND = "退款"
_COLUMNS = {
    "trade_no": "支付宝交易号", "out_trade_no": "商户订单号", "kind": "业务类型", "subject": "商品名称",
    "finished_at": "完成时间", "order_amount": "订单金额（元）", "received": "商家实收（元）",
    "refund_request_no": "退款批次号/请求号", "fee": "服务费（元）",
}
_TOTALS = re.compile(r"交易合计：(\d+)笔.*?退款合计：(\d+)笔.*?商家实收：￥?(-?[0-9.]+)元")


@dataclass(frozen=True)
class BillRow:
    """One line of the bill: a payment (交易) or a refund (退款); ``received_fen`` is negative for a refund."""

    trade_no: str
    out_trade_no: str
    kind: str
    order_fen: int
    received_fen: int
    fee_fen: int
    refund_request_no: str
    finished_at: datetime | None


@dataclass(frozen=True)
class TradeBill:
    """A day's bill: its rows, and the totals Alipay wrote under them (already checked to agree)."""

    rows: list[BillRow]
    payments: int
    refunds: int
    received_fen: int


def _signed_fen(text: str, field: str) -> int:
    text = text.strip()
    if text.startswith("-"):
        return -yuan_to_fen(text[1:], field)
    return yuan_to_fen(text or "0.00", field)


def parse_trade_bill(archive: bytes) -> TradeBill:
    """Read the 业务明细 file of a bill archive; refuse one whose rows do not add up to its totals line."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
            names = [n for n in bundle.namelist() if DETAIL_MARK in _name(n) and SUMMARY_MARK not in _name(n)]
            if len(names) != 1:
                raise MalformedError("the bill archive has no single 业务明细 file")
            raw = bundle.read(names[0])
    except zipfile.BadZipFile as exc:
        raise MalformedError("the bill is not a zip archive") from exc
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError as exc:
        raise MalformedError("the bill is not GBK text") from exc
    rows: list[BillRow] = []
    header: list[str] | None = None
    totals: tuple[int, int, int] | None = None
    for record in csv.reader(io.StringIO(text)):
        cells = [c.strip() for c in record]
        if not cells or not any(cells):
            continue
        if cells[0].startswith("#"):
            found = _TOTALS.search(",".join(record))
            if found:
                totals = (int(found.group(1)), int(found.group(2)), _signed_fen(found.group(3), "商家实收合计"))
            continue
        if header is None:
            if cells[0] != HEADER_FIRST:
                raise MalformedError("the bill has no header row")
            header = cells
            missing = [c for c in _COLUMNS.values() if c not in header]
            if missing:
                raise MalformedError(f"the bill lacks columns {missing}")
            continue
        if len(cells) < len(header):
            raise MalformedError("a bill row is short")
        value = {key: cells[header.index(name)] for key, name in _COLUMNS.items()}
        if value["kind"] not in (TRADE, REFUND):
            continue  # other business types (transfers…) are not ours to match
        rows.append(BillRow(
            trade_no=value["trade_no"], out_trade_no=value["out_trade_no"], kind=value["kind"],
            order_fen=_signed_fen(value["order_amount"], "订单金额"),
            received_fen=_signed_fen(value["received"], "商家实收"), fee_fen=_signed_fen(value["fee"], "服务费"),
            refund_request_no=value["refund_request_no"], finished_at=parse_beijing_time(value["finished_at"] or None)))
    if totals is None:
        raise MalformedError("the bill has no totals line")
    payments = sum(1 for r in rows if r.kind == TRADE)
    refunds = sum(1 for r in rows if r.kind == REFUND)
    received = sum(r.received_fen for r in rows)
    if (payments, refunds, received) != totals:
        raise MalformedError(f"the bill's rows ({payments}, {refunds}, {received} fen) disagree with its totals {totals}")
    return TradeBill(rows=rows, payments=payments, refunds=refunds, received_fen=received)


def _name(member: str) -> str:
    """A zip member's name; Alipay's are GBK without the UTF-8 flag, which zipfile reads as cp437."""
    try:
        return member.encode("cp437").decode("gbk")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return member
