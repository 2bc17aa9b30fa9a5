"""Alipay's asynchronous notification (异步通知): a signed form POST, checked before anything is believed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from . import signing
from .amounts import yuan_to_fen
from .client import TRADE_STATES, parse_beijing_time
from .errors import MalformedError, MismatchError, VerificationError
from .keys import Keys

# The literal answer that stops Alipay's retries; anything else (or a non-200) makes it send again,
# up to 8 times in 25 hours (4m, 10m, 10m, 1h, 2h, 6h, 15h).
ACK = "success"
NOTIFY_TYPE = "trade_status_sync"


@dataclass(frozen=True)
class TradeNotification:
    """A verified trade_status_sync notification (amounts in fen)."""

    notify_id: str
    out_trade_no: str
    trade_no: str
    trade_status: str
    total_fen: int
    refund_fen: int
    paid_at: datetime | None
    notified_at: datetime | None
    fields: Mapping[str, str]

    @property
    def paid(self) -> bool:
        """TRADE_SUCCESS or TRADE_FINISHED."""
        return self.trade_status in ("TRADE_SUCCESS", "TRADE_FINISHED")

    def check_order(self, out_trade_no: str, total_fen: int) -> None:
        """Refuse a notification about another order, or about our order at another price."""
        if self.out_trade_no != out_trade_no:
            raise MismatchError("out_trade_no", "not this order")
        if self.total_fen != total_fen:
            raise MismatchError("total_amount", f"{self.total_fen} fen, the order is {total_fen}")


def parse_form(body: bytes) -> dict[str, str]:
    """Decode the form body (UTF-8, the charset we ask for); a repeated key is refused, not guessed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("the notification is not UTF-8") from exc
    fields: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        if key in fields:
            raise MalformedError(f"{key} is sent twice")
        fields[key] = value
    return fields


def verify_notification(fields: Mapping[str, str], keys: Keys, *, app_id: str,
                        seller_id: str | None = None) -> TradeNotification:
    """Check signature, then app and seller, then shape; return the notification or raise one error.

    The signature covers every parameter but ``sign`` and ``sign_type``, sorted, empty ones left
    out. Only RSA2 is accepted: a notification that says RSA (SHA1) is refused, not downgraded.
    """
    if fields.get("sign_type", signing.SIGN_TYPE) != signing.SIGN_TYPE:
        raise VerificationError("bad_sign_type", str(fields.get("sign_type"))[:10])
    signature = fields.get("sign") or ""
    if not signature:
        raise VerificationError("missing_signature")
    content = signing.content_to_sign(fields, leave_out=("sign", "sign_type"))
    keys.verify(content, signature, None)
    if fields.get("app_id") != app_id:
        raise MismatchError("app_id", "the notification is for another app")
    if seller_id is not None and fields.get("seller_id") != seller_id:
        raise MismatchError("seller_id", "the money went to another seller")
    if fields.get("notify_type") != NOTIFY_TYPE:
        raise MismatchError("notify_type", str(fields.get("notify_type"))[:40])
    status = fields.get("trade_status")
    if status not in TRADE_STATES:
        raise MismatchError("trade_status", str(status)[:40])
    for name in ("notify_id", "out_trade_no", "trade_no"):
        if not fields.get(name):
            raise MalformedError(f"the notification has no {name}")
    refund = fields.get("refund_fee")
    return TradeNotification(
        notify_id=fields["notify_id"], out_trade_no=fields["out_trade_no"], trade_no=fields["trade_no"],
        trade_status=status, total_fen=yuan_to_fen(fields.get("total_amount"), "total_amount"),
        refund_fen=yuan_to_fen(refund, "refund_fee") if refund else 0,
        paid_at=parse_beijing_time(fields.get("gmt_payment")),
        notified_at=parse_beijing_time(fields.get("notify_time")), fields=dict(fields))
