"""Parse WeChat Pay's daily trade bill (交易账单, ``bill_type=ALL``) into typed rows with amounts in fen.

The format, as WeChat publishes it and the official SDKs read it: a header line of
column names; one line per payment or refund, every field prefixed with a backtick
(so spreadsheets keep long numbers as text); then a summary header line starting with
``总交易单数`` and one summary line. Amounts are yuan with two decimals (the fee has
five); they are parsed exactly with Decimal, never float. Refunds are lines whose
交易状态 is ``REFUND``. Columns are found by name, so an extra or reordered column
(``特约商户号`` appears in direct-merchant bills too) does not shift the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from .errors import MalformedError

BEIJING = timezone(timedelta(hours=8))
SUMMARY_FIRST_COLUMN = "总交易单数"
# No real payment comes near this (10 trillion yuan); beyond it an amount is a broken line, not money.
MAX_FEN = 10**15
REFUND_STATE = "REFUND"

# Column names of the ALL bill → our field names.
COLUMNS = {
    "交易时间": "trade_time",
    "公众账号ID": "appid",
    "商户号": "mchid",
    "特约商户号": "sub_mchid",
    "设备号": "device_info",
    "微信订单号": "transaction_id",
    "商户订单号": "out_trade_no",
    "用户标识": "openid",
    "交易类型": "trade_type",
    "交易状态": "trade_state",
    "付款银行": "bank_type",
    "货币种类": "currency",
    "应结订单金额": "settlement_total",
    "代金券金额": "coupon",
    "微信退款单号": "refund_id",
    "商户退款单号": "out_refund_no",
    "退款金额": "refund",
    "充值券退款金额": "coupon_refund",
    "退款类型": "refund_type",
    "退款状态": "refund_status",
    "商品名称": "description",
    "商户数据包": "attach",
    "手续费": "fee",
    "费率": "fee_rate",
    "订单金额": "total",
    "申请退款金额": "refund_requested",
    "费率备注": "fee_rate_note",
}
REQUIRED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额", "微信退款单号", "商户退款单号", "退款金额")
SUMMARY_COLUMNS = {
    "总交易单数": "count",
    "应结订单总金额": "settlement_total",
    "退款总金额": "refund",
    "充值券退款总金额": "coupon_refund",
    "手续费总金额": "fee",
    "订单总金额": "total",
    "申请退款总金额": "refund_requested",
}


@dataclass(frozen=True)
class BillRow:
    """One line of the trade bill: a payment (``trade_state`` SUCCESS…) or a refund (REFUND)."""

    trade_time: datetime
    appid: str
    mchid: str
    sub_mchid: str
    device_info: str
    transaction_id: str
    out_trade_no: str
    openid: str
    trade_type: str
    trade_state: str
    bank_type: str
    currency: str
    settlement_total_fen: int
    coupon_fen: int
    refund_id: str
    out_refund_no: str
    refund_fen: int
    coupon_refund_fen: int
    refund_type: str
    refund_status: str
    description: str
    attach: str
    # The fee has five decimals of yuan (fractions of a fen), so it stays a Decimal of yuan.
    fee_yuan: Decimal
    fee_rate: str
    total_fen: int
    refund_requested_fen: int
    fee_rate_note: str

    @property
    def is_refund(self) -> bool:
        """Tell whether this line is a refund rather than a payment."""
        return self.trade_state == REFUND_STATE


@dataclass(frozen=True)
class BillSummary:
    """The summary line at the end of the bill."""

    count: int
    settlement_total_fen: int
    refund_fen: int
    coupon_refund_fen: int
    fee_yuan: Decimal
    total_fen: int
    refund_requested_fen: int


@dataclass(frozen=True)
class UnreadableLine:
    """A data line of the bill that does not fit the format: its number (1 = the header), why, and its start."""

    line: int
    reason: str
    text: str


@dataclass(frozen=True)
class TradeBill:
    """A parsed trade bill: every line, the summary, and (read leniently) the lines that could not be read."""

    rows: tuple[BillRow, ...]
    summary: BillSummary | None
    unreadable: tuple[UnreadableLine, ...] = ()

    @property
    def payments(self) -> tuple[BillRow, ...]:
        """The payment lines."""
        return tuple(r for r in self.rows if not r.is_refund)

    @property
    def refunds(self) -> tuple[BillRow, ...]:
        """The refund lines."""
        return tuple(r for r in self.rows if r.is_refund)


def yuan_to_fen(text: str, where: str = "amount") -> int:
    """Parse a yuan amount such as ``99.00`` or ``-0.01`` exactly into integer fen."""
    value = _decimal(text, where)
    fen = value * 100
    if fen != fen.to_integral_value():
        raise MalformedError(f"{where}: {text[:20]!r} has fractions of a fen")
    if abs(fen) > MAX_FEN:
        raise MalformedError(f"{where}: {text[:24]!r} is beyond any real amount")
    return int(fen)


def _decimal(text: str, where: str) -> Decimal:
    cleaned = text.strip() or "0"
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise MalformedError(f"{where}: {text[:20]!r} is not an amount") from None
    if not value.is_finite():
        raise MalformedError(f"{where}: {text[:20]!r} is not an amount")
    return value


def _fields(line: str, where: str) -> list[str]:
    """Split a data line into its fields, each without its leading backtick."""
    if not line.startswith("`"):
        raise MalformedError(f"{where}: fields must start with a backtick")
    # Every field starts with a backtick, so ",`" separates fields even when a product name holds a comma.
    return [part.strip() for part in line[1:].split(",`")]


def _trade_time(text: str, where: str) -> datetime:
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise MalformedError(f"{where}: 交易时间 {text[:20]!r} is not YYYY-MM-DD HH:MM:SS") from None
    return moment.replace(tzinfo=BEIJING)


def parse_trade_bill(text: str, *, lenient: bool = False) -> TradeBill:
    """Parse the text of an ALL trade bill; raise MalformedError naming the line that does not fit.

    ``lenient``: a data line (or the summary) that does not fit (a field holding `` ,` ``, an
    impossible amount) becomes an ``UnreadableLine`` and the rest is read; the header stays strict.
    """
    lines = [line.rstrip("\r") for line in text.lstrip("\ufeff").split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise MalformedError("the bill is empty")
    header = [name.strip().lstrip("`") for name in lines[0].split(",")]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise MalformedError("the bill header lacks " + ", ".join(missing))
    index = {name: i for i, name in enumerate(header)}
    rows: list[BillRow] = []
    unreadable: list[UnreadableLine] = []
    summary: BillSummary | None = None
    position = 1
    while position < len(lines):
        line = lines[position]
        where = f"line {position + 1}"
        if line.lstrip("`").startswith(SUMMARY_FIRST_COLUMN):
            try:
                summary = _summary(line, lines[position + 1] if position + 1 < len(lines) else None, position)
            except MalformedError as exc:
                if not lenient:
                    raise
                unreadable.append(UnreadableLine(position + 2, str(exc)[:200], lines[position + 1][:120]
                                                 if position + 1 < len(lines) else ""))
            if position + 2 < len(lines):
                raise MalformedError(f"line {position + 3}: text after the summary")
            break
        try:
            values = _fields(line, where)
            if len(values) != len(header):
                raise MalformedError(f"{where}: {len(values)} fields, the header has {len(header)}")
            rows.append(_row({name: values[i] for name, i in index.items()}, where))
        except MalformedError as exc:
            if not lenient:
                raise
            unreadable.append(UnreadableLine(position + 1, str(exc)[:200], line[:120]))
        position += 1
    # 总交易单数 is not checked against the lines: whether WeChat counts refund lines in it is not
    # documented, and the SHA1 hash_value already proves the file is whole.
    return TradeBill(rows=tuple(rows), summary=summary, unreadable=tuple(unreadable))


def _row(values: dict[str, str], where: str) -> BillRow:
    def text(column: str) -> str:
        return values.get(column, "")

    def fen(column: str) -> int:
        return yuan_to_fen(values.get(column, ""), f"{where} {column}")

    return BillRow(
        trade_time=_trade_time(text("交易时间"), where),
        appid=text("公众账号ID"),
        mchid=text("商户号"),
        sub_mchid=text("特约商户号"),
        device_info=text("设备号"),
        transaction_id=text("微信订单号"),
        out_trade_no=text("商户订单号"),
        openid=text("用户标识"),
        trade_type=text("交易类型"),
        trade_state=text("交易状态"),
        bank_type=text("付款银行"),
        currency=text("货币种类"),
        settlement_total_fen=fen("应结订单金额"),
        coupon_fen=fen("代金券金额"),
        # Payment lines carry "0" where a refund line has its numbers.
        refund_id="" if text("微信退款单号") == "0" else text("微信退款单号"),
        out_refund_no="" if text("商户退款单号") == "0" else text("商户退款单号"),
        refund_fen=fen("退款金额"),
        coupon_refund_fen=fen("充值券退款金额"),
        refund_type=text("退款类型"),
        refund_status=text("退款状态"),
        description=text("商品名称"),
        attach=text("商户数据包"),
        fee_yuan=_decimal(text("手续费"), f"{where} 手续费"),
        fee_rate=text("费率"),
        total_fen=fen("订单金额") if "订单金额" in values else fen("应结订单金额"),
        refund_requested_fen=fen("申请退款金额") if "申请退款金额" in values else fen("退款金额"),
        fee_rate_note=text("费率备注"),
    )


def _summary(header_line: str, value_line: str | None, position: int) -> BillSummary:
    names = [name.strip().lstrip("`") for name in header_line.split(",")]
    if value_line is None:
        raise MalformedError(f"line {position + 1}: the summary header has no summary line")
    where = f"line {position + 2}"
    values = _fields(value_line, where)
    if len(values) != len(names):
        raise MalformedError(f"{where}: {len(values)} summary fields, the summary header has {len(names)}")
    found = dict(zip(names, values))

    def fen(column: str) -> int:
        return yuan_to_fen(found.get(column, ""), f"{where} {column}")

    count_text = found.get("总交易单数", "")
    if not count_text.isascii() or not count_text.isdigit():
        raise MalformedError(f"{where}: 总交易单数 {count_text[:20]!r} is not a count")
    return BillSummary(
        count=int(count_text),
        settlement_total_fen=fen("应结订单总金额"),
        refund_fen=fen("退款总金额"),
        coupon_refund_fen=fen("充值券退款总金额"),
        fee_yuan=_decimal(found.get("手续费总金额", ""), f"{where} 手续费总金额"),
        total_fen=fen("订单总金额"),
        refund_requested_fen=fen("申请退款总金额"),
    )


def format_fen(fen: int) -> str:
    """Format integer fen as the bill writes yuan: two decimals, a minus sign when negative."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
