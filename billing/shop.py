"""What the business rules need from the outside world, gathered in one object."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from licensing import KeyRing
from wechatpay.bills import TradeBill
from wechatpay.verifier import Verifier

if TYPE_CHECKING:  # billing.mail builds on this module
    from .mail import Mailer
from settings import Config, default_config

UTC = dt.timezone.utc
# A one-time course is bought for good, but the extension needs an expiry: a century.
LIFETIME = dt.timedelta(days=36500)


class WeChatPayApi(Protocol):
    """The calls billing makes to WeChat Pay (``wechatpay.client.WeChatPayClient``)."""

    def create_native_order(self, *, out_trade_no: str, description: str, amount_fen: int,
                            notify_url: str, time_expire: dt.datetime,
                            attach: str | None = None) -> str: ...

    def query_by_out_trade_no(self, out_trade_no: str, *, attempts: int | None = None) -> dict[str, Any]: ...

    def close_order(self, out_trade_no: str) -> None: ...

    def create_refund(self, *, out_refund_no: str, out_trade_no: str, refund_fen: int, total_fen: int,
                      reason: str | None, notify_url: str) -> dict[str, Any]: ...

    def query_refund(self, out_refund_no: str) -> dict[str, Any]: ...

    def apply_abnormal_refund(self, *, refund_id: str, out_refund_no: str, kind: str, bank_type: str | None = None,
                              bank_account: str | None = None, real_name: str | None = None) -> dict[str, Any]: ...

    def trade_bill(self, bill_date: dt.date, *, compressed: bool = True) -> TradeBill: ...

    # What the last answers told: the Date header's offset from our clock, and whether WeChat
    # accepted the Wechatpay-Serial we send (a refused public-key id is a configuration error).
    last_clock_skew: float | None
    serial_status: str
    serial_problem: str | None


@dataclass
class Shop:
    """The merchant's identity, keys and clients that every billing function works with."""

    wechat: WeChatPayApi
    verifier: Verifier
    apiv3_keys: Sequence[bytes]
    mchid: str
    appid: str
    license_keys: KeyRing
    notify_url: str
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(UTC))
    poll_after_ms: int = 500
    token_secret: bytes = b""
    mailer: Mailer | None = None  # SMTP server, sender, link base (None: mail stays queued)
    config: Config = field(default_factory=default_config)
    # The Alipay app (billing.alipay_method.AlipaySetup), or None when the shop takes WeChat Pay only.
    alipay: Any = None

    def __post_init__(self) -> None:
        if len(self.token_secret) < 16:
            raise ValueError("token_secret must be at least 16 bytes")

    def derive_token(self, purpose: str, public_id: str) -> str:
        """Derive a bearer token from a row's random public id and the server secret.

        Deriving (rather than storing) lets an idempotent retry be answered with the same
        token; only its hash is stored, so the database alone never yields a token.
        """
        mac = hmac.new(self.token_secret, f"{purpose}:{public_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def now(self) -> dt.datetime:
        """Return the current time as an aware UTC datetime."""
        return self.clock().astimezone(UTC)


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a secret token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare a presented token with a stored hash in constant time."""
    return hmac.compare_digest(hash_token(token), stored_hash)


_OUT_TRADE_NO_ALPHABET = string.ascii_uppercase + string.digits


def new_out_trade_no(now: dt.datetime) -> str:
    """Return a fresh merchant order number: 28 characters, time-prefixed for humans."""
    suffix = "".join(secrets.choice(_OUT_TRADE_NO_ALPHABET) for _ in range(12))
    return "LB" + now.astimezone(UTC).strftime("%Y%m%d%H%M%S") + suffix


# out_trade_no of a pack of classroom seats (billing.seats): paid like any order, licensed by seat.
PACK_PREFIX = "LP"


def new_pack_trade_no(now: dt.datetime) -> str:
    """Return a fresh merchant order number for a pack of seats: like any, with ``LP`` in front."""
    return PACK_PREFIX + new_out_trade_no(now)[2:]


def is_pack(out_trade_no: str) -> bool:
    """Tell whether an order is a pack of seats (its license is per seat, not its own)."""
    return out_trade_no.startswith(PACK_PREFIX)


def iso_utc(value: dt.datetime | None) -> str | None:
    """Format an aware datetime for the API: RFC 3339 in UTC with a ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
