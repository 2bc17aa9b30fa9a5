"""The trade bill parser: WeChat's real format, amounts parsed exactly into fen."""

from __future__ import annotations

from decimal import Decimal

import pytest

from wechatpay.bills import format_fen, parse_trade_bill, yuan_to_fen
from wechatpay.errors import MalformedError

HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
          "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
          "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
PAYMENT = ("`2026-11-25 10:00:01,`wxd678efh567hg6787,`1230000109,`0,`,`4200002026112512345678901234,"
           "`LB0001,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`OTHERS,`CNY,`1.15,`0.00,`0,`0,`0.00,`0.00,"
           "`,`,`C++ Primer, 第5版,`order:1,`0.00690,`0.60%,`1.15,`0.00,`")
REFUND = ("`2026-11-25 11:30:00,`wxd678efh567hg6787,`1230000109,`0,`,`4200002026112512345678901234,"
          "`LB0001,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,"
          "`50300000000000000000000000001,`RF0001,`0.15,`0.00,`ORIGINAL,`SUCCESS,`C++ Primer, 第5版,`order:1,"
          "`-0.00090,`0.60%,`1.15,`0.15,`")
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n`2,`1.15,`0.15,`0.00,`0.00600,`1.15,`0.15"


def bill(*lines: str) -> str:
    return "\ufeff" + "\r\n".join([HEADER, *lines, SUMMARY]) + "\r\n"


def test_payments_and_refunds_parse_into_typed_rows() -> None:
    parsed = parse_trade_bill(bill(PAYMENT, REFUND))

    [payment] = parsed.payments
    [refund] = parsed.refunds
    assert (payment.out_trade_no, payment.transaction_id, payment.total_fen, payment.settlement_total_fen) == (
        "LB0001", "4200002026112512345678901234", 115, 115)
    assert payment.description == "C++ Primer, 第5版" and payment.attach == "order:1"
    assert payment.refund_id == "" and payment.out_refund_no == "" and not payment.is_refund
    assert payment.trade_time.isoformat() == "2026-11-25T10:00:01+08:00"
    assert payment.fee_yuan == Decimal("0.00690")
    assert (refund.out_refund_no, refund.refund_id, refund.refund_fen, refund.refund_status) == (
        "RF0001", "50300000000000000000000000001", 15, "SUCCESS")
    assert parsed.summary is not None
    assert (parsed.summary.count, parsed.summary.settlement_total_fen, parsed.summary.refund_fen) == (2, 115, 15)


def test_amounts_are_exact_where_float_would_lose_a_fen() -> None:
    # float("1.15") * 100 is 114.99999999999999.
    assert int(float("1.15") * 100) == 114
    assert [yuan_to_fen(t) for t in ("1.15", "0.01", "99.00", "-0.15", "12345678.99")] == [115, 1, 9900, -15, 1234567899]


def test_fractions_of_a_fen_and_non_numbers_are_malformed() -> None:
    for text in ("0.001", "abc", "NaN", "Infinity"):
        with pytest.raises(MalformedError):
            yuan_to_fen(text)


def test_format_fen_writes_yuan_with_two_decimals() -> None:
    assert [format_fen(f) for f in (0, 1, 115, 9900, -15)] == ["0.00", "0.01", "1.15", "99.00", "-0.15"]


def test_a_bill_without_lines_has_just_the_summary() -> None:
    parsed = parse_trade_bill("\r\n".join([HEADER, "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
                                           "`0,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00"]))
    assert parsed.rows == () and parsed.summary is not None and parsed.summary.count == 0


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty"),
    ("交易时间,商户订单号\r\n", "header lacks"),
    (bill(PAYMENT.replace("`1.15,`0.00,`0,", "`1.15,`0.00,`0,`extra,", 1)), "fields"),
    (bill(PAYMENT.lstrip("`")), "backtick"),
    (bill(PAYMENT.replace("2026-11-25 10:00:01", "25/11/2026")), "交易时间"),
    (bill(PAYMENT) + "trailing\r\n", "after the summary"),
])
def test_a_bill_that_does_not_fit_the_format_is_malformed(text: str, problem: str) -> None:
    with pytest.raises(MalformedError) as info:
        parse_trade_bill(text)
    assert problem in str(info.value)
