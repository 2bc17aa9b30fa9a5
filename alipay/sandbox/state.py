"""The simulated Alipay's books: QR codes, trades, refunds, faults and notification deliveries."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from .config import NOTIFY_DELAYS, AlipaySandboxConfig
from .signing import AlipayIdentity, notification_content

log = logging.getLogger(__name__)
BEIJING = timezone(timedelta(hours=8))


def yuan(fen: int) -> str:
    """Fen as Alipay's two-decimal yuan string."""
    return f"{fen // 100}.{fen % 100:02d}"


def beijing(timestamp: float | None) -> str:
    """Alipay's ``yyyy-MM-dd HH:mm:ss`` in Beijing time ("" for none)."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


class Refusal(Exception):
    """An answer other than 10000: ``code``, ``msg``, ``sub_code``, ``sub_msg`` as Alipay writes them."""

    def __init__(self, code: str, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(f"{code} {sub_code}")
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


def business(sub_code: str, sub_msg: str) -> Refusal:
    """A 40004 业务处理失败 with its ACQ sub-code."""
    return Refusal("40004", "Business Failed", sub_code, sub_msg)


@dataclass
class RefundEntry:
    out_request_no: str
    fen: int
    reason: str
    at: float


@dataclass
class Trade:
    """One precreated order: a QR until scanned, then a trade with Alipay's states."""

    out_trade_no: str
    total_fen: int
    subject: str
    notify_url: str
    token: str
    created_at: float
    expires_at: float | None
    qr_origin: str
    status: str | None = None  # None until scanned: Alipay has no trade yet
    trade_no: str = ""
    buyer_id: str = ""
    buyer_logon_id: str = ""
    scanned_at: float | None = None
    paid_at: float | None = None
    closed_at: float | None = None
    refunds: dict[str, RefundEntry] = field(default_factory=dict)

    @property
    def refunded_fen(self) -> int:
        return sum(r.fen for r in self.refunds.values())

    @property
    def qr_code(self) -> str:
        return f"{self.qr_origin}/qr/{self.token}"


@dataclass
class Delivery:
    """One notification and what became of each attempt to deliver it."""

    notify_id: str
    out_trade_no: str
    url: str
    params: dict[str, str]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False
    lost: bool = False


class AlipaySandboxState:
    """Everything the simulator remembers, behind one lock."""

    def __init__(self, config: AlipaySandboxConfig) -> None:
        self.config = config
        self.identity = AlipayIdentity(config.alipay_private_key_pem, config.app_public_key_pem)
        self.lock = threading.RLock()
        self.trades: dict[str, Trade] = {}
        self.by_token: dict[str, Trade] = {}
        self.deliveries: list[Delivery] = []
        self.requests: list[dict[str, Any]] = []
        # Faults armed by the control API.
        self.lose_notifications = 0
        self.repeat_notifications = 1
        self.refuse_answers = 0  # the merchant's "success" is ignored this many times (Alipay re-sends)
        self.gateway_faults: dict[str, list[str]] = {}
        self.spaced_answers = False
        self.bills_same_day = False  # a day's bill is ready only the next day, unless a test says otherwise
        self.bill_links: dict[str, tuple[Any, float]] = {}
        self._timers: set[threading.Timer] = set()
        self._session = requests.Session()

    def now(self) -> float:
        return self.config.clock()

    # -- trades ----------------------------------------------------------------------------------

    def precreate(self, biz: dict[str, Any], notify_url: str, qr_origin: str) -> Trade:
        out_trade_no = _required(biz, "out_trade_no", 64)
        subject = _required(biz, "subject", 256)
        total_fen = _amount(biz.get("total_amount"), "total_amount")
        if not 1 <= total_fen <= 100_000_000 * 100:
            raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "total_amount 超出范围")
        expires_at = _expiry(biz, self.now())
        with self.lock:
            trade = self.trades.get(out_trade_no)
            if trade is not None:
                if trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                    raise business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
                if trade.status == "TRADE_CLOSED":
                    raise business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
                if trade.total_fen != total_fen or trade.subject != subject:
                    raise business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
                return trade  # the same request again: the same QR
            trade = Trade(out_trade_no=out_trade_no, total_fen=total_fen, subject=subject,
                          notify_url=notify_url, token=secrets.token_urlsafe(12), created_at=self.now(),
                          expires_at=expires_at, qr_origin=qr_origin)
            self.trades[out_trade_no] = trade
            self.by_token[trade.token] = trade
            return trade

    def existing(self, biz: dict[str, Any]) -> Trade:
        """The trade a query, close, cancel or refund names; ACQ.TRADE_NOT_EXIST before the scan."""
        out_trade_no = biz.get("out_trade_no")
        trade_no = biz.get("trade_no")
        if not out_trade_no and not trade_no:
            raise Refusal("40002", "Invalid Arguments", "isv.missing-parameter", "out_trade_no 和 trade_no 不能同时为空")
        with self.lock:
            self._expire_all()
            trade = self.trades.get(str(out_trade_no)) if out_trade_no else next(
                (t for t in self.trades.values() if t.trade_no == trade_no), None)
            if trade is None or trade.status is None:
                raise business("ACQ.TRADE_NOT_EXIST", "交易不存在")
            return trade

    def scan(self, trade: Trade) -> None:
        """The learner scans: Alipay creates the trade (WAIT_BUYER_PAY), unless the QR has expired."""
        with self.lock:
            self._expire_all()
            if trade.status is None:
                if trade.expires_at is not None and self.now() >= trade.expires_at:
                    return
                trade.status = "WAIT_BUYER_PAY"
                trade.scanned_at = self.now()
                trade.trade_no = self._trade_no()
                trade.buyer_id = "2088" + "".join(secrets.choice("0123456789") for _ in range(12))
                trade.buyer_logon_id = "lea***@example.com"

    def pay(self, trade: Trade) -> bool:
        """The learner confirms on the phone: TRADE_SUCCESS and a notification; False if it can no longer be paid."""
        with self.lock:
            self.scan(trade)
            if trade.status != "WAIT_BUYER_PAY":
                return False
            trade.status = "TRADE_SUCCESS"
            trade.paid_at = self.now()
            params = self._trade_notice(trade)
        self.notify(trade, params)
        return True

    def close(self, trade: Trade) -> None:
        with self.lock:
            if trade.status != "WAIT_BUYER_PAY":
                raise business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            trade.status = "TRADE_CLOSED"
            trade.closed_at = self.now()

    def cancel(self, out_trade_no: str) -> tuple[Trade | None, str]:
        """撤销: close an unpaid trade, refund a paid one in full; a trade not yet scanned is simply ended."""
        with self.lock:
            trade = self.trades.get(out_trade_no)
            if trade is None:
                raise business("ACQ.TRADE_NOT_EXIST", "交易不存在")
            if trade.status in (None, "WAIT_BUYER_PAY"):
                trade.status = "TRADE_CLOSED" if trade.status else None
                trade.closed_at = self.now()
                if trade.status is None:
                    trade.expires_at = self.now()  # the QR can no longer be paid
                return trade, "close"
            if trade.status == "TRADE_SUCCESS":
                left = trade.total_fen - trade.refunded_fen
                if left > 0:
                    self._record_refund(trade, "cancel-" + trade.trade_no, left, "撤销")
                return trade, "refund"
            raise business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")

    def refund(self, trade: Trade, out_request_no: str, fen: int, reason: str) -> tuple[Trade, bool]:
        """alipay.trade.refund; a repeat of an out_request_no with the same amount is the same refund (fund_change N)."""
        with self.lock:
            known = trade.refunds.get(out_request_no)
            if known is not None:
                if known.fen != fen:
                    raise business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与退款请求号对应的金额不一致")
                return trade, False
            if trade.status == "TRADE_FINISHED":
                raise business("ACQ.TRADE_HAS_FINISHED", "交易已完结")
            if trade.status != "TRADE_SUCCESS":
                raise business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if fen > trade.total_fen - trade.refunded_fen:
                raise business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            self._record_refund(trade, out_request_no, fen, reason)
            return trade, True

    def _record_refund(self, trade: Trade, out_request_no: str, fen: int, reason: str) -> None:
        trade.refunds[out_request_no] = RefundEntry(out_request_no, fen, reason, self.now())
        if trade.refunded_fen >= trade.total_fen:
            trade.status = "TRADE_CLOSED"
            trade.closed_at = self.now()
        params = self._trade_notice(trade, refund=trade.refunds[out_request_no])
        threading.Thread(target=self.notify, args=(trade, params), daemon=True).start()

    def _expire_all(self) -> None:
        now = self.now()
        for trade in self.trades.values():
            if trade.status == "WAIT_BUYER_PAY" and trade.expires_at is not None and now >= trade.expires_at:
                trade.status = "TRADE_CLOSED"
                trade.closed_at = trade.expires_at

    def _trade_no(self) -> str:
        stamp = datetime.fromtimestamp(self.now(), BEIJING).strftime("%Y%m%d")
        return stamp + "22001" + "".join(secrets.choice("0123456789") for _ in range(19))

    # -- notifications ---------------------------------------------------------------------------

    def _trade_notice(self, trade: Trade, refund: RefundEntry | None = None) -> dict[str, str]:
        """The form Alipay posts for a trade's change (异步通知 trade_status_sync)."""
        amount = yuan(trade.total_fen)
        params = {
            "notify_time": beijing(self.now()), "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(16), "app_id": self.config.app_id, "auth_app_id": self.config.app_id,
            "charset": "utf-8", "version": "1.0", "sign_type": "RSA2",
            "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
            "buyer_id": trade.buyer_id, "buyer_logon_id": trade.buyer_logon_id,
            "seller_id": self.config.seller_id, "trade_status": trade.status or "",
            "total_amount": amount, "receipt_amount": amount, "invoice_amount": amount,
            "buyer_pay_amount": amount, "point_amount": "0.00", "subject": trade.subject,
            "gmt_create": beijing(trade.scanned_at), "gmt_payment": beijing(trade.paid_at),
            "fund_bill_list": json.dumps([{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}],
                                         separators=(",", ":")),
        }
        if refund is not None:
            params.update({"out_biz_no": refund.out_request_no, "refund_fee": yuan(trade.refunded_fen),
                           "gmt_refund": beijing(refund.at) + ".000"})
            if trade.status == "TRADE_CLOSED":
                params["gmt_close"] = beijing(trade.closed_at)
        params = {k: v for k, v in params.items() if v != ""}
        params["sign"] = self.identity.sign(notification_content(params))
        return params

    def notify(self, trade: Trade, params: dict[str, str]) -> None:
        """Post the notification (as many copies as armed, or none if it is to be lost), re-sending on failure."""
        delivery = Delivery(notify_id=params["notify_id"], out_trade_no=trade.out_trade_no,
                            url=self.local_url(trade.notify_url), params=params)
        with self.lock:
            self.deliveries.append(delivery)
            if self.lose_notifications > 0:
                self.lose_notifications -= 1
                delivery.lost = True
                return
            copies = self.repeat_notifications
        if not delivery.url:
            return
        if copies > 1:
            threads = [threading.Thread(target=self._send, args=(delivery, 0), daemon=True) for _ in range(copies)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(self.config.notify_timeout + 1)
            return
        self._send(delivery, 0)

    def resend(self, out_trade_no: str) -> Delivery:
        """Send the trade's latest notification again, as Alipay's re-send would (same notify_id)."""
        with self.lock:
            latest = [d for d in self.deliveries if d.out_trade_no == out_trade_no]
            if not latest:
                raise KeyError(out_trade_no)
            delivery = latest[-1]
            delivery.lost = False
        self._send(delivery, len(NOTIFY_DELAYS))
        return delivery

    def _send(self, delivery: Delivery, attempt: int) -> None:
        entry: dict[str, Any] = {"at": self.now()}
        try:
            answer = self._session.post(delivery.url, data=delivery.params, timeout=self.config.notify_timeout,
                                        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
            entry.update(status=answer.status_code, body=answer.text[:200])
            ok = answer.status_code == 200 and answer.text.strip() == "success"
        except requests.RequestException as exc:
            entry.update(status=0, body=type(exc).__name__)
            ok = False
        with self.lock:
            if ok and self.refuse_answers > 0:
                self.refuse_answers -= 1
                ok = False
                entry["ignored"] = True
            delivery.attempts.append(entry)
            if ok:
                delivery.delivered = True
                return
        if attempt < len(NOTIFY_DELAYS):
            self._later(NOTIFY_DELAYS[attempt] * self.config.retry_scale, delivery, attempt + 1)

    def _later(self, delay: float, delivery: Delivery, attempt: int) -> None:
        timer = threading.Timer(delay, self._send, args=(delivery, attempt))
        timer.daemon = True
        with self.lock:
            self._timers = {t for t in self._timers if t.is_alive()}
            self._timers.add(timer)
        timer.start()

    def stop(self) -> None:
        """Cancel every pending re-send (tests call this when their server stops)."""
        with self.lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    def local_url(self, url: str) -> str:
        """Where a notify_url is really served: the origin map plays the TLS proxy in front of the merchant."""
        if not url:
            return ""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        mapped = self.config.notify_origin_map.get(origin)
        if mapped is None:
            return url
        target = urlsplit(mapped)
        return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))

    # -- faults ----------------------------------------------------------------------------------

    def take_gateway_fault(self, method: str) -> str | None:
        with self.lock:
            queue = self.gateway_faults.get(method) or self.gateway_faults.get("*")
            if not queue:
                return None
            return queue.pop(0)


def _required(biz: dict[str, Any], name: str, limit: int) -> str:
    value = biz.get(name)
    if not isinstance(value, str) or not value:
        raise Refusal("40002", "Invalid Arguments", "isv.missing-parameter", f"{name} 不能为空")
    if len(value) > limit:
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", f"{name} 超长")
    return value


def _amount(value: Any, name: str) -> int:
    """Yuan with at most two decimals, as Alipay accepts it."""
    text = value if isinstance(value, str) else ""
    whole, _, cents = text.partition(".")
    if not whole.isdigit() or (cents and (not cents.isdigit() or len(cents) > 2)) or text.endswith("."):
        raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", f"{name} 格式错误")
    return int(whole) * 100 + int(cents.ljust(2, "0") or "0")


def _expiry(biz: dict[str, Any], now: float) -> float | None:
    """time_expire (yyyy-MM-dd HH:mm:ss, Beijing) or timeout_express ("90m", "2h", "1d")."""
    if biz.get("time_expire"):
        try:
            moment = datetime.strptime(str(biz["time_expire"]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        except ValueError as exc:
            raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "time_expire 格式错误") from exc
        return moment.timestamp()
    express = str(biz.get("timeout_express") or "")
    if express:
        units = {"m": 60, "h": 3600, "d": 86400}
        if express[-1:] not in units or not express[:-1].isdigit():
            raise Refusal("40002", "Invalid Arguments", "isv.invalid-parameter", "timeout_express 格式错误")
        return now + int(express[:-1]) * units[express[-1]]
    return now + 2 * 3600  # the QR's own default life in this simulator


