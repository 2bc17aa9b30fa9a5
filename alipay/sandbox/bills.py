"""The simulator's daily bills: Alipay's 业务明细 and 汇总 CSV files, GBK, in a zip, behind a short-lived address."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, timedelta, timezone

from .state import AlipaySandboxState, yuan

BEIJING = timezone(timedelta(hours=8))
COLUMNS = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
           "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
           "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
FEE_RATE = 0.006  # 当面付's usual 0.6%


def _day_of(timestamp: float) -> date:
    return datetime.fromtimestamp(timestamp, BEIJING).date()


def _time(timestamp: float | None) -> str:
    return "" if timestamp is None else datetime.fromtimestamp(timestamp, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _signed(fen: int) -> str:
    return ("-" if fen < 0 else "") + yuan(abs(fen))


def bill_archive(state: AlipaySandboxState, day: date) -> bytes:
    """The zip Alipay serves for ``day`` (Beijing): every payment and refund finished that day."""
    lines: list[tuple[str, ...]] = []
    received = 0
    payments = refunds = 0
    fee_total = 0
    with state.lock:
        trades = list(state.trades.values())
        for trade in trades:
            if trade.paid_at is not None and _day_of(trade.paid_at) == day:
                fee = -round(trade.total_fen * FEE_RATE)
                lines.append((trade.trade_no, trade.out_trade_no, "交易", trade.subject, _time(trade.scanned_at),
                              _time(trade.paid_at), trade.buyer_logon_id, yuan(trade.total_fen),
                              yuan(trade.total_fen), "", _signed(fee)))
                received += trade.total_fen
                payments += 1
                fee_total += fee
            for refund in trade.refunds.values():
                if _day_of(refund.at) == day:
                    fee = round(refund.fen * FEE_RATE)
                    lines.append((trade.trade_no, trade.out_trade_no, "退款", trade.subject, _time(trade.scanned_at),
                                  _time(refund.at), trade.buyer_logon_id, yuan(trade.total_fen),
                                  _signed(-refund.fen), refund.out_request_no, _signed(fee)))
                    received -= refund.fen
                    refunds += 1
                    fee_total += fee
    account = state.config.seller_id + "0156"
    stamp = day.strftime("%Y年%m月%d日")
    following = (day + timedelta(days=1)).strftime("%Y年%m月%d日")
    out = io.StringIO()
    out.write("#支付宝业务明细查询\r\n")
    out.write(f"#账号：[{account}]\r\n")
    out.write(f"#起始日期：[{stamp} 00:00:00]   终止日期：[{following} 00:00:00]\r\n")
    out.write("#-----------------------------------------业务明细列表----------------------------------------\r\n")
    out.write(COLUMNS + "\r\n")
    for trade_no, out_trade_no, kind, subject, created, finished, buyer, order_amount, got, request_no, charge in lines:
        cells = [trade_no, out_trade_no, kind, subject.replace(",", "，"), created, finished, "", "", "", "", buyer,
                 order_amount, got, "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00", request_no, charge,
                 "0.00", ""]
        out.write(",".join(c + "\t" for c in cells) + "\r\n")  # Alipay pads every value with a tab
    out.write("#-----------------------------------------业务明细列表结束------------------------------------\r\n")
    out.write(f"#交易合计：{payments}笔，退款合计：{refunds}笔，商家实收：￥{_signed(received)}元，"
              f"服务费：￥{_signed(fee_total)}元\r\n")
    out.write(f"#导出时间：[{datetime.now(BEIJING).strftime('%Y年%m月%d日 %H:%M:%S')}]\r\n")
    summary = (f"#支付宝业务汇总查询\r\n#账号：[{account}]\r\n"
               f"门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）\r\n"
               f"合计,,{payments},{refunds},{_signed(received)},{_signed(received)}\r\n")
    name = f"{account}_{day:%Y%m%d}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(f"{name}_业务明细.csv", out.getvalue().encode("gbk"))
        bundle.writestr(f"{name}_业务明细(汇总).csv", summary.encode("gbk"))
    return buffer.getvalue()
