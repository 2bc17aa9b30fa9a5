"""The simulator's memory: orders, refunds, notifications, logs and armed faults, behind one lock."""

from __future__ import annotations

import collections
import datetime as dt
import json
import secrets
import string
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from wechatpay.crypto import aead_encrypt, make_nonce

from .config import SandboxConfig
from .delivery import Courier, Notification
from .refusal import DEFAULT_MESSAGES, Refusal
from .rules import NativeOrderRequest, RefundRequest
from .signing import PlatformIdentity

CHINA = dt.timezone(dt.timedelta(hours=8))
DEFAULT_PAYABLE = 7 * 86400
MIN_PAYABLE = 60
MAX_PAYABLE = 90 * 86400
REFUND_WINDOW = 365 * 86400
MAX_REFUNDS = 50
LOG_LIMIT = 10_000
BASE62 = string.digits + string.ascii_letters

TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "订单已关闭",
    "REFUND": "订单发生过退款",
}
REFUND_EVENTS = {
    "SUCCESS": ("REFUND.SUCCESS", "退款成功"),
    "CLOSED": ("REFUND.CLOSED", "退款关闭"),
    "ABNORMAL": ("REFUND.ABNORMAL", "退款异常"),
}


def rfc3339(timestamp: float) -> str:
    """Format a Unix time the way WeChat does: RFC 3339 in +08:00."""
    return dt.datetime.fromtimestamp(timestamp, CHINA).isoformat(timespec="seconds")


def compact_json(value: Any) -> bytes:
    """Serialise as WeChat sends JSON: compact, raw UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class Order:
    """One Native order as WeChat Pay holds it."""

    request: NativeOrderRequest
    pr: str
    created_at: float
    payable_until: float
    code_issued_at: float
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: float | None = None
    openid: str | None = None
    bank_type: str | None = None
    closed_at: float | None = None
    last_attempt: str | None = None
    refund_nos: list[str] = field(default_factory=list)
    notification_id: str | None = None
    # Every code_url token issued for the order and when; each lives code_url_lifetime on its own.
    codes: dict[str, float] = field(default_factory=dict)

    @property
    def out_trade_no(self) -> str:
        return self.request.out_trade_no

    @property
    def total(self) -> int:
        return self.request.total

    @property
    def code_url(self) -> str:
        return f"weixin://wxpay/bizpayurl?pr={self.pr}"

    @property
    def paid(self) -> bool:
        return self.transaction_id is not None


@dataclass
class Refund:
    """One domestic refund."""

    request: RefundRequest
    refund_id: str
    out_trade_no: str
    transaction_id: str
    total: int
    created_at: float
    notify_url: str | None
    status: str = "PROCESSING"
    success_time: float | None = None
    notification_ids: list[str] = field(default_factory=list)

    @property
    def out_refund_no(self) -> str:
        return self.request.out_refund_no


@dataclass
class Outcome:
    """What happened when the learner pressed a button on the phone."""

    kind: str  # paid | cancelled | insufficient | refused
    zh: str
    en: str


@dataclass
class ApiFaultPlan:
    """The faults that apply to one API call."""

    fail: Refusal | None = None
    # The call takes effect, and only then is its answer replaced by this error (a 500 after the order was made).
    fail_after: Refusal | None = None
    hang: float = 0.0
    unsigned: bool = False
    probe: bool = False


@dataclass
class Faults:
    """Armed fault injection; counters are consumed one call or one delivery at a time."""

    fail_next: int = 0
    fail_status: int = 500
    fail_code: str = "SYSTEM_ERROR"
    fail_message: str | None = None
    fail_after_effect: bool = False
    hang_next: int = 0
    hang_seconds: float = 0.0
    unsigned_next: int = 0
    api_probe_next: int = 0
    # Time windows (Unix seconds on the sandbox clock): every matching call fails or hangs until then.
    fail_until: float = 0.0
    hang_until: float = 0.0
    api_paths: tuple[str, ...] = ()
    notify_mode: str = "normal"
    notify_copies: int = 5
    notify_delay: float = 0.0
    probe_next: int = 0
    tamper_next: int = 0
    tamper_what: str = "ciphertext"

    def arm(self, payload: dict[str, Any], now: float = 0.0) -> None:
        """Merge a ``POST control/faults`` payload; raise ValueError naming a bad key."""
        api = payload.get("api", {})
        notify = payload.get("notify", {})
        if not isinstance(api, dict) or not isinstance(notify, dict):
            raise ValueError("api and notify must be objects")
        unknown = set(payload) - {"api", "notify"}
        unknown |= {f"api.{k}" for k in set(api) - {
            "fail_next", "status", "code", "message", "hang_next", "seconds", "unsigned_next", "paths",
            "fail_for", "hang_for", "probe_next", "after_effect"}}
        unknown |= {f"notify.{k}" for k in set(notify) - {
            "mode", "copies", "delay", "probe_next", "tamper_next", "what"}}
        if unknown:
            raise ValueError("unknown keys: " + ", ".join(sorted(unknown)))
        if "paths" in api:
            paths = api["paths"]
            paths = [paths] if isinstance(paths, str) else paths
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise ValueError("api.paths must be a string or a list of strings")
            self.api_paths = tuple(paths)
        self.fail_next = _count(api, "fail_next", self.fail_next)
        self.fail_status = int(_number(api, "status", self.fail_status))
        if not 400 <= self.fail_status <= 599:
            raise ValueError("api.status must be an error status (400-599)")
        self.fail_code = str(api.get("code", self.fail_code))
        self.fail_message = api.get("message", self.fail_message)
        after_effect = api.get("after_effect", self.fail_after_effect)
        if not isinstance(after_effect, bool):
            raise ValueError("api.after_effect must be true or false")
        self.fail_after_effect = after_effect
        self.hang_next = _count(api, "hang_next", self.hang_next)
        self.hang_seconds = _number(api, "seconds", self.hang_seconds)
        self.unsigned_next = _count(api, "unsigned_next", self.unsigned_next)
        self.api_probe_next = _count(api, "probe_next", self.api_probe_next)
        if "fail_for" in api:
            self.fail_until = now + _number(api, "fail_for", 0.0)
        if "hang_for" in api:
            self.hang_until = now + _number(api, "hang_for", 0.0)
        mode = notify.get("mode", self.notify_mode)
        if mode not in ("normal", "drop", "duplicate"):
            raise ValueError("notify.mode must be normal, drop or duplicate")
        self.notify_mode = mode
        self.notify_copies = max(1, _count(notify, "copies", self.notify_copies))
        self.notify_delay = _number(notify, "delay", self.notify_delay)
        self.probe_next = _count(notify, "probe_next", self.probe_next)
        self.tamper_next = _count(notify, "tamper_next", self.tamper_next)
        what = notify.get("what", self.tamper_what)
        if what not in ("ciphertext", "signature"):
            raise ValueError("notify.what must be ciphertext or signature")
        self.tamper_what = what

    def take_api(self, path: str, now: float = 0.0) -> ApiFaultPlan:
        """Consume the faults that apply to an API call on ``path`` made at ``now``."""
        plan = ApiFaultPlan()
        if self.api_paths and not any(path.startswith(p) for p in self.api_paths):
            return plan
        if now < self.fail_until:
            message = self.fail_message or DEFAULT_MESSAGES.get(self.fail_code, self.fail_code)
            plan.fail = Refusal(self.fail_status, self.fail_code, message)
        elif self.fail_next > 0:
            self.fail_next -= 1
            message = self.fail_message or DEFAULT_MESSAGES.get(self.fail_code, self.fail_code)
            plan.fail = Refusal(self.fail_status, self.fail_code, message)
        if plan.fail is not None and self.fail_after_effect:
            plan.fail, plan.fail_after = None, plan.fail
        if now < self.hang_until:
            plan.hang = self.hang_seconds
        elif self.hang_next > 0:
            self.hang_next -= 1
            plan.hang = self.hang_seconds
        if self.unsigned_next > 0:
            self.unsigned_next -= 1
            plan.unsigned = True
        elif self.api_probe_next > 0:
            self.api_probe_next -= 1
            plan.probe = True
        return plan

    def take_delivery(self) -> str:
        """Consume the fault for one notification request: normal, probe, tamper-ciphertext or tamper-signature."""
        if self.probe_next > 0:
            self.probe_next -= 1
            return "probe"
        if self.tamper_next > 0:
            self.tamper_next -= 1
            return "tamper-" + self.tamper_what
        return "normal"

    def describe(self) -> dict[str, Any]:
        return {
            "api": {
                "fail_next": self.fail_next, "status": self.fail_status, "code": self.fail_code,
                "after_effect": self.fail_after_effect,
                "hang_next": self.hang_next, "seconds": self.hang_seconds,
                "unsigned_next": self.unsigned_next, "probe_next": self.api_probe_next,
                "paths": list(self.api_paths),
                "fail_until": self.fail_until, "hang_until": self.hang_until,
            },
            "notify": {
                "mode": self.notify_mode, "copies": self.notify_copies, "delay": self.notify_delay,
                "probe_next": self.probe_next, "tamper_next": self.tamper_next, "what": self.tamper_what,
            },
        }


def _count(section: dict[str, Any], key: str, current: int) -> int:
    value = section.get(key, current)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    return value


def _number(section: dict[str, Any], key: str, current: float) -> float:
    value = section.get(key, current)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key} must be a non-negative number")
    return float(value)


class SandboxState:
    """Everything the simulated WeChat Pay remembers; every method is thread-safe."""

    def __init__(self, config: SandboxConfig, identity: PlatformIdentity) -> None:
        self.config = config
        self.identity = identity
        self.lock = threading.RLock()
        self.orders: dict[str, Order] = {}
        self.orders_by_pr: dict[str, Order] = {}
        self.orders_by_transaction: dict[str, Order] = {}
        self.refunds: dict[str, Refund] = {}
        self.notifications: dict[str, Notification] = {}
        self.request_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_LIMIT)
        self.delivery_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_LIMIT)
        self.faults = Faults()
        self.stopping = threading.Event()
        self.courier = Courier(self)
        assert config.key_phase is not None
        self.key_phase: str = config.key_phase
        # The merchant's switch in 商户平台: responses use the public key only once it is on.
        self.switch_on = False
        self._gray_sends = 0
        self.code_url_lifetime = config.code_url_lifetime
        self.code_url_reuse = False
        self.bill_ready_after = config.bill_ready_after
        # Differences planted into the next trade bills (see sandbox/bills.py), and issued download tokens.
        self.bill_plants: list[dict[str, Any]] = []
        self.bill_files: dict[str, tuple[bytes, float]] = {}

    def now(self) -> float:
        return self.config.clock()

    # --- keys ---------------------------------------------------------------------------------

    def set_keys(self, phase: str | None = None, switch_on: bool | None = None) -> None:
        """Move the key switch: phase certificate | gray | public_key, and the merchant's switch."""
        with self.lock:
            if phase is not None:
                if phase not in ("certificate", "gray", "public_key"):
                    raise ValueError("phase must be certificate, gray or public_key")
                if phase != "certificate" and not self.identity.public_key_id:
                    raise ValueError("gray and public_key need a public_key_id")
                self.key_phase = phase
            if switch_on is not None:
                self.switch_on = switch_on

    def response_serial(self, requested: str | None) -> str:
        """Which key signs an API response, given the request's Wechatpay-Serial."""
        identity = self.identity
        with self.lock:
            known = requested if requested and identity.knows_serial(requested) else None
            if self.key_phase == "public_key":
                return known or identity.serial
            if self.key_phase == "gray" and self.switch_on and known is not None and known == identity.public_key_id:
                return known
            # Before the switch, responses stay certificate-signed even when the request names the public key.
            if known and known != identity.public_key_id:
                return known.upper()
            return identity.certificate_serial

    def notification_serial(self) -> str:
        """Which key signs the next notification: in the gray phase, the certificate and the public key by turns."""
        identity = self.identity
        with self.lock:
            if self.key_phase == "certificate" or not identity.public_key_id:
                return identity.certificate_serial
            if self.key_phase == "public_key":
                return identity.public_key_id
            self._gray_sends += 1
            return identity.public_key_id if self._gray_sends % 2 == 0 else identity.certificate_serial

    def stop(self) -> None:
        """Stop delivering notifications and settling refunds; wait for in-flight sends."""
        self.stopping.set()
        self.courier.stop()

    # --- orders -------------------------------------------------------------------------------

    def create_native_order(self, req: NativeOrderRequest) -> Order:
        """Create the order, or return it again for an identical repeat of an unpaid one."""
        with self.lock:
            now = self.now()
            existing = self.orders.get(req.out_trade_no)
            if existing is not None:
                if existing.paid:
                    # Not ORDERPAID (a v2 code): v3 merchants report this answer for a number already used.
                    raise Refusal(400, "INVALID_REQUEST", "201 商户订单号重复")
                if existing.trade_state == "CLOSED":
                    raise Refusal(400, "ORDER_CLOSED", "订单已关闭")
                if existing.request.fingerprint != req.fingerprint:
                    raise Refusal(400, "INVALID_REQUEST", "商户订单号重复，且请求参数与原订单不一致")
                # An identical repeat hands out a current code_url; the earlier ones live out their own 2 h.
                # (Whether WeChat gives back the same one while it lives is undocumented: code_url_reuse.)
                if not (self.code_url_reuse and now < existing.code_issued_at + self.code_url_lifetime):
                    self._issue_code(existing, now)
                return existing
            if req.time_expire is None:
                payable_until = now + DEFAULT_PAYABLE
            else:
                payable_until = min(max(req.time_expire, now + MIN_PAYABLE), now + MAX_PAYABLE)
            order = Order(request=req, pr="", created_at=now, payable_until=payable_until, code_issued_at=now)
            self._issue_code(order, now)
            self.orders[req.out_trade_no] = order
            return order

    def _issue_code(self, order: Order, now: float) -> None:
        pr = self._unique(self.orders_by_pr, lambda: _base62(7 + secrets.randbelow(4)))
        order.pr = pr
        order.code_issued_at = now
        order.codes[pr] = now
        self.orders_by_pr[pr] = order

    def order(self, out_trade_no: str) -> Order:
        with self.lock:
            order = self.orders.get(out_trade_no)
        if order is None:
            raise Refusal(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    def order_by_transaction_id(self, transaction_id: str) -> Order:
        with self.lock:
            order = self.orders_by_transaction.get(transaction_id)
        if order is None:
            raise Refusal(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    def order_by_pr(self, pr: str) -> Order | None:
        with self.lock:
            return self.orders_by_pr.get(pr)

    def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order; an unknown, closed or paid out_trade_no is accepted silently (204, the paid one unchanged)."""
        with self.lock:
            order = self.orders.get(out_trade_no)
            if order is None:
                return
            if order.paid:
                # v3 documents no answer for closing a paid order (ORDERPAID is a v2 code): answer the
                # 204 a merchant may well get, so only a query can tell it that the order was paid.
                return
            if order.trade_state == "CLOSED":
                # Closing is idempotent: a second close answers 204 again.
                return
            order.trade_state = "CLOSED"
            order.closed_at = self.now()

    def attempt_payment(self, order: Order, result: str, pr: str | None = None) -> Outcome:
        """Apply the learner's choice on the phone (for the code_url ``pr``, default the newest): success, insufficient or cancel."""
        notification = None
        with self.lock:
            now = self.now()
            if result == "cancel":
                order.last_attempt = "cancel"
                return Outcome("cancelled", "已取消支付，订单未支付", "Payment cancelled; the order stays unpaid")
            refused = self._why_unpayable(order, now, pr)
            if refused is not None:
                return refused
            if result == "insufficient":
                order.last_attempt = "insufficient"
                return Outcome("insufficient", "零钱余额不足，支付失败", "Insufficient balance; payment failed")
            order.trade_state = "SUCCESS"
            order.transaction_id = self._unique(self.orders_by_transaction, lambda: _transaction_id(now))
            order.success_time = now
            order.openid = "o" + make_nonce(27)
            order.bank_type = "OTHERS"
            order.last_attempt = "success"
            self.orders_by_transaction[order.transaction_id] = order
            notification = self._new_notification(
                "TRANSACTION.SUCCESS", "支付成功", "transaction",
                self.transaction(order), order.request.notify_url, order.out_trade_no,
            )
            order.notification_id = notification.id
        self.courier.dispatch(notification)
        return Outcome("paid", "支付成功", "Payment successful")

    def _why_unpayable(self, order: Order, now: float, pr: str | None = None) -> Outcome | None:
        if order.paid:
            return Outcome("refused", "订单已支付，请勿重复支付", "This order is already paid")
        if order.trade_state == "CLOSED":
            return Outcome("refused", "订单已关闭，无法支付", "This order is closed and cannot be paid")
        if now > order.payable_until:
            return Outcome("refused", "订单已过期，无法支付", "This order has expired and cannot be paid")
        issued = order.codes.get(pr, order.code_issued_at) if pr is not None else order.code_issued_at
        if now > issued + self.code_url_lifetime:
            return Outcome("refused", "二维码已过期，请重新获取", "This QR code has expired")
        return None

    def payable(self, order: Order, pr: str | None = None) -> bool:
        with self.lock:
            return self._why_unpayable(order, self.now(), pr) is None

    def transaction(self, order: Order) -> dict[str, Any]:
        """Return the transaction object the query API and the notification carry."""
        with self.lock:
            req = order.request
            head = {"appid": req.appid, "mchid": req.mchid, "out_trade_no": req.out_trade_no}
            state = {"trade_state": order.trade_state, "trade_state_desc": TRADE_STATE_DESC[order.trade_state]}
            if not order.paid:
                return {**head, **state, "amount": {"total": req.total, "currency": req.currency}}
            assert order.success_time is not None
            return {
                **head,
                "transaction_id": order.transaction_id,
                "trade_type": "NATIVE",
                **state,
                "bank_type": order.bank_type,
                "attach": req.attach or "",
                "success_time": rfc3339(order.success_time),
                "payer": {"openid": order.openid},
                "amount": {
                    "total": req.total,
                    "payer_total": req.total,
                    "currency": req.currency,
                    "payer_currency": req.currency,
                },
            }

    # --- refunds ------------------------------------------------------------------------------

    def create_refund(self, req: RefundRequest) -> dict[str, Any]:
        """Accept a refund (status PROCESSING) or return the existing one with the same out_refund_no."""
        with self.lock:
            now = self.now()
            if req.transaction_id is not None:
                order = self.orders_by_transaction.get(req.transaction_id)
            else:
                order = self.orders.get(req.out_trade_no or "")
            if order is None or not order.paid:
                raise Refusal(404, "RESOURCE_NOT_EXISTS", "订单不存在")
            existing = self.refunds.get(req.out_refund_no)
            if existing is not None:
                if existing.out_trade_no == order.out_trade_no and existing.request.refund == req.refund:
                    return self.refund_view(existing)
                raise Refusal(400, "INVALID_REQUEST", "商户退款单号已被使用，且请求参数与原退款单不一致")
            if req.total != order.total:
                raise Refusal(400, "INVALID_REQUEST", "订单金额与原订单金额不一致")
            assert order.success_time is not None
            if now > order.success_time + REFUND_WINDOW:
                raise Refusal(400, "INVALID_REQUEST", "订单已超过退款期限")
            if len(order.refund_nos) >= MAX_REFUNDS:
                raise Refusal(400, "INVALID_REQUEST", "部分退款次数超过上限")
            refunded = sum(
                self.refunds[no].request.refund for no in order.refund_nos if self.refunds[no].status != "CLOSED"
            )
            if refunded + req.refund > order.total:
                raise Refusal(400, "INVALID_REQUEST", "退款金额超过订单可退金额")
            assert order.transaction_id is not None
            refund = Refund(
                request=req,
                refund_id=self._unique(self.refunds_by_id(), lambda: "50" + _digits(27)),
                out_trade_no=order.out_trade_no,
                transaction_id=order.transaction_id,
                total=order.total,
                created_at=now,
                notify_url=req.notify_url or self.config.refund_notify_url,
            )
            self.refunds[req.out_refund_no] = refund
            order.refund_nos.append(req.out_refund_no)
            self._refresh_trade_state(order)
            view = self.refund_view(refund)
        if self.config.refund_delay is not None:
            self.courier.call_later(
                self.config.refund_delay, lambda: self.settle_refund(req.out_refund_no, "SUCCESS", automatic=True)
            )
        return view

    def refund_by_hand(self, out_trade_no: str, refund_fen: int, reason: str | None = None) -> dict[str, Any]:
        """A refund the merchant makes in 商户平台: WeChat numbers it, and tells the platform-configured URL."""
        with self.lock:
            order = self.order(out_trade_no)
            request = RefundRequest(out_refund_no="MP" + _digits(26), transaction_id=order.transaction_id,
                                    out_trade_no=None, reason=reason, notify_url=None, refund=refund_fen,
                                    total=order.total, currency="CNY")
        return self.create_refund(request)

    def apply_abnormal_refund(self, refund_id: str, out_refund_no: Any, kind: Any) -> dict[str, Any]:
        """Resolve an ABNORMAL refund (to the user's or the merchant's bank card): it goes PROCESSING, then SUCCESS."""
        with self.lock:
            refund = self.refunds_by_id().get(refund_id)
            if refund is None:
                raise Refusal(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            if out_refund_no != refund.out_refund_no:
                raise Refusal(400, "PARAM_ERROR", "商户退款单号与微信退款单号不匹配")
            if kind not in ("USER_BANK_CARD", "MERCHANT_BANK_CARD"):
                raise Refusal(400, "PARAM_ERROR", "type只能是USER_BANK_CARD或MERCHANT_BANK_CARD")
            if refund.status != "ABNORMAL":
                raise Refusal(400, "INVALID_REQUEST", "退款单状态不是退款异常，无需处理")
            refund.status = "PROCESSING"
            view = self.refund_view(refund)
        if self.config.refund_delay is not None:
            self.courier.call_later(
                self.config.refund_delay, lambda: self.settle_refund(refund.out_refund_no, "SUCCESS", automatic=True)
            )
        return view

    def _refresh_trade_state(self, order: Order) -> None:
        """转入退款: a paid order reads REFUND from the moment a refund is accepted (not only once it succeeds)
        until every refund of it is closed."""
        holding = [no for no in order.refund_nos if self.refunds[no].status != "CLOSED"]
        order.trade_state = "REFUND" if holding else "SUCCESS"

    def refunds_by_id(self) -> dict[str, Refund]:
        return {r.refund_id: r for r in self.refunds.values()}

    def refund(self, out_refund_no: str) -> Refund:
        with self.lock:
            refund = self.refunds.get(out_refund_no)
        if refund is None:
            raise Refusal(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return refund

    def settle_refund(self, out_refund_no: str, status: str, automatic: bool = False) -> dict[str, Any]:
        """Move a refund to SUCCESS, CLOSED or ABNORMAL and notify the merchant."""
        if status not in REFUND_EVENTS:
            raise ValueError("status must be SUCCESS, CLOSED or ABNORMAL")
        with self.lock:
            refund = self.refund(out_refund_no)
            if refund.status in ("SUCCESS", "CLOSED") or (automatic and refund.status == "ABNORMAL"):
                if automatic:  # an abnormal refund waits for the merchant (apply-abnormal-refund)
                    return self.refund_view(refund)
                raise ValueError(f"refund is already {refund.status}")
            refund.status = status
            if status == "SUCCESS":
                refund.success_time = self.now()
            self._refresh_trade_state(self.orders[refund.out_trade_no])
            notification = None
            if refund.notify_url:
                event_type, summary = REFUND_EVENTS[status]
                notification = self._new_notification(
                    event_type, summary, "refund", self._refund_notice(refund),
                    refund.notify_url, refund.out_refund_no,
                )
                refund.notification_ids.append(notification.id)
            view = self.refund_view(refund)
        if notification is not None:
            self.courier.dispatch(notification)
        return view

    def refund_view(self, refund: Refund) -> dict[str, Any]:
        """Return the Refund object of the refund APIs."""
        with self.lock:
            view: dict[str, Any] = {
                "refund_id": refund.refund_id,
                "out_refund_no": refund.out_refund_no,
                "transaction_id": refund.transaction_id,
                "out_trade_no": refund.out_trade_no,
                "channel": "ORIGINAL",
                "user_received_account": "支付用户零钱",
                "create_time": rfc3339(refund.created_at),
                "status": refund.status,
                "funds_account": "AVAILABLE",
                "amount": {
                    "total": refund.total,
                    "refund": refund.request.refund,
                    "from": [],
                    "payer_total": refund.total,
                    "payer_refund": refund.request.refund,
                    "settlement_refund": refund.request.refund,
                    "settlement_total": refund.total,
                    "discount_refund": 0,
                    "currency": "CNY",
                },
                "promotion_detail": [],
            }
            if refund.success_time is not None:
                view["success_time"] = rfc3339(refund.success_time)
            return view

    def _refund_notice(self, refund: Refund) -> dict[str, Any]:
        notice: dict[str, Any] = {
            "mchid": self.config.mchid,
            "out_trade_no": refund.out_trade_no,
            "transaction_id": refund.transaction_id,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": refund.total,
                "refund": refund.request.refund,
                "payer_total": refund.total,
                "payer_refund": refund.request.refund,
            },
        }
        if refund.success_time is not None:
            notice["success_time"] = rfc3339(refund.success_time)
        return notice

    # --- notifications ------------------------------------------------------------------------

    def _new_notification(
        self, event_type: str, summary: str, original_type: str, resource: dict[str, Any], url: str, subject: str
    ) -> Notification:
        plaintext = compact_json(resource)
        nonce = make_nonce(12)
        envelope: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "create_time": rfc3339(self.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": aead_encrypt(self.config.apiv3_key, nonce, original_type, plaintext),
                "associated_data": original_type,
                "nonce": nonce,
            },
        }
        notification = Notification(
            id=envelope["id"],
            event_type=event_type,
            subject=subject,
            declared_url=url,
            url=self.local_url(url),
            envelope=envelope,
            body=compact_json(envelope),
            plaintext=plaintext,
        )
        self.notifications[notification.id] = notification
        return notification

    def local_url(self, url: str) -> str:
        """Apply ``notify_origin_map``: where a notify_url really gets delivered."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        for declared, local in self.config.notify_origin_map.items():
            if origin == declared.rstrip("/").lower():
                return local.rstrip("/") + url[len(origin):]
        return url

    def resend_payment_notification(self, out_trade_no: str) -> Notification:
        """Send an order's payment notification again now (same id and ciphertext)."""
        with self.lock:
            order = self.order(out_trade_no)
            if order.notification_id is None:
                raise LookupError("the order has no payment notification (not paid)")
            notification = self.notifications[order.notification_id]
        self.courier.replay(notification)
        return notification

    def resend_refund_notification(self, out_refund_no: str) -> Notification:
        """Send a refund's latest notification again now (same id and ciphertext), as WeChat's re-sends do."""
        with self.lock:
            refund = self.refund(out_refund_no)
            if not refund.notification_ids:
                raise LookupError("the refund has no notification (not settled, or no refund notify URL)")
            notification = self.notifications[refund.notification_ids[-1]]
        self.courier.replay(notification)
        return notification

    # --- logs ---------------------------------------------------------------------------------

    def record_request(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.request_log.append(entry)

    def record_delivery(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.delivery_log.append(entry)

    def clear_logs(self) -> None:
        with self.lock:
            self.request_log.clear()
            self.delivery_log.clear()

    def order_details(self, order: Order) -> dict[str, Any]:
        """Return the internal view of an order for the control API."""
        with self.lock:
            return {
                "out_trade_no": order.out_trade_no,
                "description": order.request.description,
                "total": order.total,
                "notify_url": order.request.notify_url,
                "attach": order.request.attach,
                "pr": order.pr,
                "code_url": order.code_url,
                "trade_state": order.trade_state,
                "trade_state_desc": TRADE_STATE_DESC[order.trade_state],
                "transaction_id": order.transaction_id,
                "success_time": rfc3339(order.success_time) if order.success_time is not None else None,
                "created_at": rfc3339(order.created_at),
                "payable_until": rfc3339(order.payable_until),
                "last_attempt": order.last_attempt,
                "payable": self._why_unpayable(order, self.now()) is None,
                "notification_id": order.notification_id,
                "refunds": [self.refund_view(self.refunds[no]) for no in order.refund_nos],
            }

    def _unique(self, taken: dict[str, Any], make: Any) -> str:
        while True:
            candidate = make()
            if candidate not in taken:
                return str(candidate)


def _base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def _digits(length: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(length))


def _transaction_id(now: float) -> str:
    # 4200 + the payment date + random digits: 32 characters like a real WeChat order number.
    return "4200" + dt.datetime.fromtimestamp(now, CHINA).strftime("%Y%m%d") + _digits(20)
