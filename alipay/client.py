"""The one choke point for calls to Alipay's OpenAPI gateway: signed requests, verified answers, bounded retries."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from . import signing
from .amounts import fen_to_yuan, yuan_to_fen
from .errors import AlipayError, ApiError, MalformedError, MismatchError, NoBill, TransportError, VerificationError
from .keys import Keys

if TYPE_CHECKING:
    from .bills import TradeBill

log = logging.getLogger(__name__)

BEIJING = timezone(timedelta(hours=8))
PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"
SUCCESS = "10000"
MAX_BACKOFF = 10.0
# Subject (订单标题) is at most 256 characters; refund_reason at most 256; out_trade_no 64.
SUBJECT_CHARS = 256
REASON_CHARS = 256
# Trade states Alipay reports (交易状态).
WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_CLOSED = "TRADE_CLOSED"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_FINISHED = "TRADE_FINISHED"
TRADE_STATES = frozenset({WAIT_BUYER_PAY, TRADE_CLOSED, TRADE_SUCCESS, TRADE_FINISHED})
PAID_STATES = frozenset({TRADE_SUCCESS, TRADE_FINISHED})


def beijing_time(moment: datetime) -> str:
    """Alipay's time format: ``yyyy-MM-dd HH:mm:ss`` in Beijing time, from an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("time must be timezone-aware")
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def parse_beijing_time(text: str | None) -> datetime | None:
    """Read Alipay's ``yyyy-MM-dd HH:mm:ss`` (Beijing) as an aware UTC datetime; None for no value."""
    if not text:
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError as exc:
        raise MalformedError(f"not an Alipay time: {text[:30]!r}") from exc
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Precreated:
    """A trade Alipay will create when the learner scans ``qr_code`` (it does not exist before the scan)."""

    out_trade_no: str
    qr_code: str


@dataclass(frozen=True)
class Trade:
    """What alipay.trade.query says of one trade (amounts in fen)."""

    out_trade_no: str
    trade_no: str
    trade_status: str
    total_fen: int
    buyer_logon_id: str
    paid_at: datetime | None

    @property
    def paid(self) -> bool:
        """TRADE_SUCCESS or TRADE_FINISHED: the money arrived (refunds are told apart by refund calls)."""
        return self.trade_status in PAID_STATES


@dataclass(frozen=True)
class Cancelled:
    """alipay.trade.cancel's answer: ``action`` is ``close`` (unpaid) or ``refund`` (it was paid, now refunded)."""

    out_trade_no: str
    action: str
    retry: bool


@dataclass(frozen=True)
class Refunded:
    """alipay.trade.refund's answer: ``refund_fen`` is the trade's refunded total so far, ``fund_change`` Y/N."""

    out_trade_no: str
    trade_no: str
    refund_fen: int
    fund_change: bool


@dataclass(frozen=True)
class RefundState:
    """alipay.trade.fastpay.refund.query's answer for one ``out_request_no``."""

    out_trade_no: str
    out_request_no: str
    refund_fen: int
    total_fen: int
    succeeded: bool


class AlipayClient:
    """Calls to the gateway for one app: each signed, each answer verified before a field is read."""

    def __init__(
        self,
        *,
        app_id: str,
        private_key: RSAPrivateKey,
        keys: Keys,
        gateway: str = PRODUCTION_GATEWAY,
        notify_url: str | None = None,
        seller_id: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(gateway)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"gateway must be an http(s) URL: {gateway!r}")
        if not app_id:
            raise ValueError("app_id must not be empty")
        self.app_id = app_id
        self.private_key = private_key
        self.keys = keys
        self.gateway = gateway
        self.notify_url = notify_url
        self.seller_id = seller_id
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.clock = clock
        self.sleep = sleep

    # -- the seven calls -------------------------------------------------------------------------

    def precreate(self, out_trade_no: str, total_fen: int, subject: str,
                  *, expires_at: datetime | None = None) -> Precreated:
        """alipay.trade.precreate: a QR the learner scans; retried with the same ``out_trade_no``."""
        if total_fen <= 0:
            raise ValueError("total_fen must be positive")
        biz: dict[str, Any] = {"out_trade_no": out_trade_no, "total_amount": fen_to_yuan(total_fen),
                               "subject": subject[:SUBJECT_CHARS]}
        if expires_at is not None:
            biz["time_expire"] = beijing_time(expires_at)
        node = self.call("alipay.trade.precreate", biz, notify=True)
        self._same_trade(node, out_trade_no)
        qr = node.get("qr_code")
        if not isinstance(qr, str) or not qr:
            raise MalformedError("precreate answered without qr_code")
        return Precreated(out_trade_no=out_trade_no, qr_code=qr)

    def query(self, out_trade_no: str) -> Trade | None:
        """alipay.trade.query; None when Alipay knows no such trade (ACQ.TRADE_NOT_EXIST: not scanned yet)."""
        try:
            node = self.call("alipay.trade.query", {"out_trade_no": out_trade_no})
        except ApiError as exc:
            if exc.signed and exc.sub_code == "ACQ.TRADE_NOT_EXIST":
                return None
            raise
        self._same_trade(node, out_trade_no)
        status = node.get("trade_status")
        if status not in TRADE_STATES:
            raise MalformedError(f"unknown trade_status {str(status)[:30]!r}")
        return Trade(out_trade_no=out_trade_no, trade_no=_text(node, "trade_no"), trade_status=status,
                     total_fen=yuan_to_fen(node.get("total_amount"), "total_amount"),
                     buyer_logon_id=str(node.get("buyer_logon_id") or ""),
                     paid_at=parse_beijing_time(node.get("send_pay_date")))

    def close(self, out_trade_no: str) -> bool:
        """alipay.trade.close; True if a waiting trade was closed, False if Alipay never created it (not scanned)."""
        try:
            node = self.call("alipay.trade.close", {"out_trade_no": out_trade_no})
        except ApiError as exc:
            if exc.signed and exc.sub_code == "ACQ.TRADE_NOT_EXIST":
                return False
            raise
        self._same_trade(node, out_trade_no)
        return True

    def cancel(self, out_trade_no: str) -> Cancelled:
        """alipay.trade.cancel: close if unpaid, refund in full if paid (the 撤销 of a trade in doubt)."""
        node = self.call("alipay.trade.cancel", {"out_trade_no": out_trade_no})
        self._same_trade(node, out_trade_no)
        return Cancelled(out_trade_no=out_trade_no, action=str(node.get("action") or ""),
                         retry=node.get("retry_flag") == "Y")

    def refund(self, out_trade_no: str, refund_fen: int, out_request_no: str, reason: str = "") -> Refunded:
        """alipay.trade.refund of ``refund_fen``; ``out_request_no`` makes a repeat the same refund."""
        if refund_fen <= 0:
            raise ValueError("refund_fen must be positive")
        biz = {"out_trade_no": out_trade_no, "refund_amount": fen_to_yuan(refund_fen),
               "out_request_no": out_request_no}
        if reason:
            biz["refund_reason"] = reason[:REASON_CHARS]
        node = self.call("alipay.trade.refund", biz)
        self._same_trade(node, out_trade_no)
        return Refunded(out_trade_no=out_trade_no, trade_no=_text(node, "trade_no"),
                        refund_fen=yuan_to_fen(node.get("refund_fee"), "refund_fee"),
                        fund_change=node.get("fund_change") == "Y")

    def refund_query(self, out_trade_no: str, out_request_no: str) -> RefundState | None:
        """alipay.trade.fastpay.refund.query; None when no refund of that ``out_request_no`` exists."""
        node = self.call("alipay.trade.fastpay.refund.query",
                         {"out_trade_no": out_trade_no, "out_request_no": out_request_no})
        if not node.get("out_request_no") and not node.get("refund_status"):
            return None  # Alipay answers 10000 with no refund fields when it has no such refund
        self._same_trade(node, out_trade_no)
        if node.get("out_request_no") != out_request_no:
            raise MismatchError("out_request_no", "the answer is about another refund")
        return RefundState(out_trade_no=out_trade_no, out_request_no=out_request_no,
                           refund_fen=yuan_to_fen(node.get("refund_amount"), "refund_amount"),
                           total_fen=yuan_to_fen(node.get("total_amount"), "total_amount"),
                           succeeded=node.get("refund_status") == "REFUND_SUCCESS")

    def bill_download_url(self, day: date, bill_type: str = "trade") -> str:
        """alipay.data.dataservice.bill.downloadurl.query: a short-lived address of the day's bill (a zip)."""
        try:
            node = self.call("alipay.data.dataservice.bill.downloadurl.query",
                             {"bill_type": bill_type, "bill_date": day.isoformat()})
        except ApiError as exc:
            if exc.sub_code == "isp.bill_not_exist":
                raise NoBill(exc.code, exc.msg, exc.sub_code, exc.sub_msg, signed=exc.signed) from exc
            raise
        url = node.get("bill_download_url")
        if not isinstance(url, str) or not url:
            raise MalformedError("no bill_download_url")
        return url

    def trade_bill(self, day: date) -> TradeBill:
        """The day's trade bill (业务明细), downloaded and checked against its own totals (alipay.bills.TradeBill)."""
        from .bills import parse_trade_bill

        return parse_trade_bill(self.download(self.bill_download_url(day)))

    def download(self, url: str) -> bytes:
        """Fetch a bill's bytes from the address Alipay gave (it is valid for 30 seconds)."""
        try:
            answer = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransportError(f"bill download: {type(exc).__name__}") from exc
        if answer.status_code != 200:
            raise TransportError(f"bill download: HTTP {answer.status_code}")
        return answer.content

    # -- the protocol -----------------------------------------------------------------------------

    def signed_params(self, method: str, biz: Mapping[str, Any], *, notify: bool = False) -> dict[str, str]:
        """The form a request sends: common parameters, ``biz_content`` as JSON, and ``sign`` over them all."""
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": signing.SIGN_TYPE,
            "timestamp": beijing_time(self.clock()),
            "version": "1.0",
            "biz_content": json.dumps(dict(biz), ensure_ascii=False, separators=(",", ":")),
            **self.keys.request_params(),
        }
        if notify and self.notify_url:
            params["notify_url"] = self.notify_url
        params["sign"] = signing.sign(self.private_key, signing.content_to_sign(params))
        return params

    def call(self, method: str, biz: Mapping[str, Any], *, notify: bool = False) -> dict[str, Any]:
        """Send one method, retrying transient failures (same parameters), and return the verified node."""
        delay = 0.5
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._call_once(method, biz, notify=notify)
            except AlipayError as exc:
                if not exc.retryable or attempt == self.max_attempts:
                    raise
                log.warning("alipay %s attempt %d failed (%s); retrying", method, attempt, exc)
                self.sleep(min(MAX_BACKOFF, delay) * (1 + random.random() / 4))
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, method: str, biz: Mapping[str, Any], *, notify: bool) -> dict[str, Any]:
        params = self.signed_params(method, biz, notify=notify)
        try:
            answer = self.session.post(
                self.gateway, params={"charset": "utf-8"}, data=params, timeout=self.timeout,
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"})
        except requests.RequestException as exc:
            raise TransportError(f"{method}: {type(exc).__name__}") from exc
        if answer.status_code >= 500:
            raise ApiError("20000", f"HTTP {answer.status_code}", status=answer.status_code)
        if answer.status_code != 200:
            raise ApiError("40002", f"HTTP {answer.status_code}", status=answer.status_code)
        raw = answer.content.decode("utf-8", "replace")
        return verify_answer(raw, method, self.keys)

    def _same_trade(self, node: Mapping[str, Any], out_trade_no: str) -> None:
        got = node.get("out_trade_no")
        if got is not None and got != out_trade_no:
            raise MismatchError("out_trade_no", "the answer is about another trade")


def verify_answer(raw: str, method: str, keys: Keys) -> dict[str, Any]:
    """Check a gateway answer's signature over its ``…_response`` text as received, then read it.

    A success (code 10000) without a valid signature is refused; an error is raised as
    ApiError, marked ``signed`` only if its signature checked out.
    """
    node_name = method.replace(".", "_") + "_response"
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedError("the answer is not JSON") from exc
    if not isinstance(document, dict):
        raise MalformedError("the answer is not a JSON object")
    name = node_name if node_name in document else "error_response" if "error_response" in document else None
    text = signing.response_node(raw, name) if name else None
    if name is None or text is None:
        raise VerificationError("no_response_node", f"no {node_name} in the answer")
    signature = document.get("sign")
    cert_sn = document.get("alipay_cert_sn")
    signed = False
    if isinstance(signature, str) and signature:
        keys.verify(text, signature, cert_sn if isinstance(cert_sn, str) else None)
        signed = True
    node = json.loads(text)
    if not isinstance(node, dict):
        raise MalformedError(f"{name} is not an object")
    code = str(node.get("code", ""))
    if code == SUCCESS and name == node_name:
        if not signed:
            raise VerificationError("missing_signature", f"{node_name} is unsigned")
        return node
    raise ApiError(code or "0", str(node.get("msg", "")), str(node.get("sub_code", "") or ""),
                   str(node.get("sub_msg", "") or ""), signed=signed)


def _text(node: Mapping[str, Any], name: str) -> str:
    value = node.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedError(f"the answer has no {name}")
    return value
