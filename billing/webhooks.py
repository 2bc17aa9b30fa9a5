"""Webhooks: tell the creator's own URLs (a CRM, a spreadsheet script, a 企业微信 or 飞书 group bot) what sold.

How it works (the creator's words are in README "Webhooks"):

- **Events come from the audit trail.** Every state change already writes its audit event in the
  same transaction (order paid, license issued, refund settled, license revoked, …), so the trail is
  a durable outbox that nothing else has to write to: the ``webhooks`` job reads the events after its
  mark (``rollup_mark`` row ``webhooks``) and makes one ``webhook_delivery`` row per subscribed
  endpoint, with the body fixed then. A notification from WeChat never waits for a webhook, and a
  restart loses nothing: the mark moves only in the transaction that wrote the deliveries. The job
  also looks back over the last ``LOOKBACK`` events behind its mark (a PostgreSQL transaction can
  commit a lower id after a higher one); a delivery's ``message_id`` is unique, so none is made twice.
- **Sent by the job, retried with backoff**: after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; then the
  delivery is ``failed`` and the console shows it with "send again". Each send is claimed first
  (compare-and-set on ``next_attempt_at``), so two processes never send the same attempt.
- **Signed per Standard Webhooks** (https://www.standardwebhooks.com, format ``standard``): headers
  ``webhook-id`` (the same on every attempt: a receiver drops repeats), ``webhook-timestamp`` (Unix
  seconds of this attempt) and ``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(secret,
  ``id.timestamp.body``)), where secret is the base64 after ``whsec_`` of the endpoint's secret. A
  receiver recomputes it over the raw body, compares in constant time and refuses a timestamp more
  than 5 minutes from its clock (a replay). ``wecom`` and ``feishu`` send the bots' documented text
  message instead; a 飞书 bot with 签名校验 on gets its ``timestamp`` and ``sign``.
- **Only where the creator pointed, never inside the server's network.** Each request goes to the
  configured URL's host only, with a 5 s timeout, no redirects followed, and to an address checked
  after resolving it (and then connected to by that address, so a second DNS answer cannot differ):
  public addresses only, unless ``LBPAY_WEBHOOK_TARGETS`` is ``loopback`` (this machine too: tests,
  a laptop) or ``private`` (a company network too). Link-local (cloud metadata at 169.254.169.254),
  multicast and reserved addresses are never reached. A 企业微信 or 飞书 format goes to its vendor's
  host only (where the setting allows local addresses, to those too, for tests).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from peewee import fn

from database import write_transaction
from models import AuditEvent, Course, DiscountCode, Order, RollupMark, WebhookDelivery, WebhookEndpoint

from . import audit
from .errors import BillingError
from .shop import Shop

EVENTS = ("order.paid", "license.issued", "refund.succeeded", "license.revoked", "complaint.created",
          "fapiao.requested")
# The audit actions that are webhook events: a free order (a 100 % code) is paid too, with 0 fen.
FROM_AUDIT = {"order.paid": "order.paid", "order.free": "order.paid", "license.issued": "license.issued",
              "refund.succeeded": "refund.succeeded", "license.revoked": "license.revoked",
              "complaint.received": "complaint.created", "fapiao.requested": "fapiao.requested"}
FORMATS = ("standard", "wecom", "feishu")
BOT_HOSTS = {"wecom": ("qyapi.weixin.qq.com",), "feishu": ("open.feishu.cn", "open.larksuite.com")}
BOT_PATHS = {"wecom": "/cgi-bin/webhook/send", "feishu": "/open-apis/bot/v2/hook/"}
BACKOFF = (dt.timedelta(seconds=5), dt.timedelta(minutes=5), dt.timedelta(minutes=30), dt.timedelta(hours=2),
           dt.timedelta(hours=5), dt.timedelta(hours=10), dt.timedelta(hours=10))
MAX_ATTEMPTS = len(BACKOFF) + 1
CLAIM = dt.timedelta(minutes=2)  # a claimed send not recorded by then (the process died) is due again
TIMEOUT_SECONDS = 5.0
SEND_PER_RUN = 20
LOOKBACK = 50
MARK = "webhooks"
SECRET_PREFIX = "whsec_"
MAX_ENDPOINTS = 20


# --- secrets -----------------------------------------------------------------------------------

def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _sealing_key(shop: Shop) -> bytes:
    return hashlib.sha256(shop.derive_token("webhook-secrets", "v1").encode()).digest()


def seal(shop: Shop, secret: str) -> str:
    """An endpoint's secret as stored: AES-256-GCM under a key derived from the server secret."""
    nonce = os.urandom(12)
    return "v1:" + base64.b64encode(nonce + AESGCM(_sealing_key(shop)).encrypt(nonce, secret.encode(), b"webhook"))\
        .decode()


def unseal(shop: Shop, sealed: str | None) -> str | None:
    """The secret back from its stored form (None when there is none)."""
    if not sealed:
        return None
    raw = base64.b64decode(sealed.removeprefix("v1:"))
    return AESGCM(_sealing_key(shop)).decrypt(raw[:12], raw[12:], b"webhook").decode()


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of Standard Webhooks for one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def feishu_sign(secret: str, timestamp: int) -> str:
    """飞书 custom bot's signature: HMAC-SHA256 keyed with "timestamp\\nsecret" over nothing, in base64."""
    return base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


# --- where a request may go ----------------------------------------------------------------------

def address_allowed(address: str, targets: str) -> bool:
    """Whether the setting ``targets`` (public | loopback | private) lets a webhook reach this IP address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False  # never: cloud metadata (169.254.169.254), broadcast, 0.0.0.0
    if ip.is_loopback:
        return targets in ("loopback", "private")
    if ip.is_global:
        return True
    return targets == "private"  # 10/8, 172.16/12, 192.168/16, 100.64/10 (shared), fc00::/7 …


def _literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_url(url: str, fmt: str, targets: str) -> str:
    """The endpoint URL as stored, or ``bad_request`` saying what is wrong with it."""
    url = (url or "").strip()
    if fmt not in FORMATS:
        raise BillingError("bad_request", f"format must be one of {', '.join(FORMATS)}")
    if len(url) > 500:
        raise BillingError("bad_request", "the URL is longer than 500 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BillingError("bad_request", "not a URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise BillingError("bad_request", "the URL starts with https:// and names a host")
    if parts.username or parts.password:
        raise BillingError("bad_request", "no user name or password in the URL (put a token in the path or query)")
    if port == 0:
        raise BillingError("bad_request", "port 0 is not a port")
    literal = _literal_ip(host)
    local = literal is not None and not ipaddress.ip_address(literal).is_global or host == "localhost"
    if literal is not None and not address_allowed(literal, targets):
        raise BillingError("bad_request", f"{host} is not a public address: webhooks never reach the server's own "
                                          "network (LBPAY_WEBHOOK_TARGETS allows loopback or private ones)")
    if host == "localhost" and targets == "public":
        raise BillingError("bad_request", "localhost is this server: LBPAY_WEBHOOK_TARGETS=loopback allows it")
    if parts.scheme == "http" and not local:
        raise BillingError("bad_request", "use https:// for a host on the internet (the body says what sold)")
    if fmt in BOT_HOSTS and not (local and targets != "public"):
        if host not in BOT_HOSTS[fmt] or not parts.path.startswith(BOT_PATHS[fmt]) or parts.scheme != "https":
            raise BillingError("bad_request", f"a {fmt} bot's URL is https://{BOT_HOSTS[fmt][0]}{BOT_PATHS[fmt]}… "
                                              "(copy it from the group's bot settings)")
    return url


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: the receiver's status and first words, or why there was no answer."""

    ok: bool
    status: int | None = None
    response: str = ""
    error: str | None = None
    permanent: bool = False  # retrying cannot help (the address is not allowed)


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address checked beforehand, whatever the host name resolves to later."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address; the certificate is still verified against the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], targets: str,
         timeout: float = TIMEOUT_SECONDS) -> Outcome:
    """The one way a webhook leaves this server: POST to an allowed address, short timeout, no redirects."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return Outcome(False, error=f"cannot resolve {host}: {exc}"[:300])
    addresses = [str(info[4][0]) for info in found]
    refused = [a for a in addresses if not address_allowed(a, targets)]
    if refused or not addresses:
        return Outcome(False, error=f"{host} resolves to {refused[0] if refused else 'nothing'}, not a public address; "
                                    "not sent", permanent=True)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(host, port, addresses[0], timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers={
            **headers, "Content-Type": "application/json", "User-Agent": "LearningBuddyPay-Webhooks/1"})
        answer = connection.getresponse()
        status = answer.status
        said = _first_words(answer, time.monotonic() + 2 * timeout)
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
    finally:
        connection.close()
    return Outcome(200 <= status < 300, status, said[:300], None if 200 <= status < 300 else f"HTTP {status}")


def _first_words(answer: http.client.HTTPResponse, deadline: float) -> str:
    """Up to 2 KiB of the answer, read by a deadline: a receiver that dribbles bytes cannot hold the job."""
    chunks: list[bytes] = []
    size = 0
    while size < 2048 and time.monotonic() < deadline:
        chunk = answer.read1(2048 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _bot_refusal(fmt: str, said: str) -> str | None:
    """A bot answers 200 even when it refuses (bad key, rate limit): its own code says so."""
    try:
        answer = json.loads(said)
    except ValueError:
        return "the bot's answer is not JSON"
    if not isinstance(answer, dict):
        return "the bot's answer is not a JSON object"
    code = answer.get("errcode") if fmt == "wecom" else answer.get("code", answer.get("StatusCode"))
    if code in (0, None) and (fmt != "wecom" or "errcode" in answer):
        return None
    return f"the bot refused: {code} {answer.get('errmsg') or answer.get('msg') or answer.get('StatusMessage') or ''}"[:300]


# --- what an event says ----------------------------------------------------------------------------

def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def _order_data(order: Order) -> dict[str, Any]:
    course = Course.get_or_none(Course.id == order.course_id)
    discount = DiscountCode.get_or_none(DiscountCode.id == order.discount_id) if order.discount_id else None
    return {
        "id": order.public_id, "course_id": order.course_id, "course_title": course.title if course else order.course_id,
        "amount_fen": order.amount_fen,
        "list_price_fen": order.amount_fen if order.list_price_fen is None else order.list_price_fen,
        "discount_fen": order.discount_fen or 0, "code": discount.code if discount else None,
        "currency": order.currency, "email": order.email, "out_trade_no": order.out_trade_no,
        "transaction_id": order.transaction_id,
        "paid_at": order.paid_at.isoformat().replace("+00:00", "Z") if order.paid_at else None,
        "sandbox": bool(order.sandbox),
    }


def event_data(event_type: str, detail: dict[str, Any], order: Order | None) -> dict[str, Any]:
    """The ``data`` of one event: the order as sold, and what this event adds (license, refund…)."""
    data: dict[str, Any] = {}
    if order is not None:
        data["order"] = _order_data(order)
    if event_type == "order.paid" and order is not None:
        data["order"]["amount_fen"] = int(detail.get("amount_fen", order.amount_fen))
    elif event_type == "license.issued":
        data["license"] = {"id": detail.get("license"), "expires_at": detail.get("expires_at")}
    elif event_type == "license.revoked":
        data["license"] = {"id": detail.get("license"), "reason": detail.get("reason")}
    elif event_type == "refund.succeeded":
        data["refund"] = {"out_refund_no": detail.get("out_refund_no"), "amount_fen": detail.get("amount_fen"),
                          "refunded_fen": detail.get("refunded_fen")}
    elif event_type in ("complaint.created", "fapiao.requested"):
        data["detail"] = {k: v for k, v in detail.items() if k not in ("phone", "payer_phone")}
    return data


def bot_text(event_type: str, data: dict[str, Any]) -> str:
    """The one line a group bot shows, e.g. "新订单 ¥99.00 C++ Primer"."""
    order = data.get("order") or {}
    title = order.get("course_title", "")
    sandbox = "（沙箱）" if order.get("sandbox") else ""
    if event_type == "order.paid":
        text = f"新订单 {yuan(int(order.get('amount_fen', 0)))} {title}"
        if order.get("discount_fen"):
            text += f"（原价 {yuan(int(order['list_price_fen']))}，优惠 {order.get('code') or '首发价'}）"
        return text + sandbox
    if event_type == "license.issued":
        return f"许可证已发放 {title} · 订单 {order.get('id', '')}{sandbox}"
    if event_type == "refund.succeeded":
        amount = int((data.get("refund") or {}).get("amount_fen") or 0)
        return f"退款成功 {yuan(amount)} {title} · 订单 {order.get('id', '')}{sandbox}"
    if event_type == "license.revoked":
        return f"许可证已撤销 {title} · {(data.get('license') or {}).get('reason') or ''}{sandbox}"
    if event_type == "complaint.created":
        return f"新的微信支付投诉，请在后台及时回复 {title}{sandbox}".strip()
    if event_type == "fapiao.requested":
        return f"开票申请 {title} · 订单 {order.get('id', '')}{sandbox}"
    return "测试消息：Learning Buddy Pay 的通知已连通。 Test message: webhooks reach this group."


def message_body(fmt: str, event_type: str, data: dict[str, Any], at: dt.datetime) -> str:
    """The body sent for one event in an endpoint's format (fixed when the delivery is made)."""
    if fmt == "wecom":
        return json.dumps({"msgtype": "text", "text": {"content": bot_text(event_type, data)}}, ensure_ascii=False)
    if fmt == "feishu":
        return json.dumps({"msg_type": "text", "content": {"text": bot_text(event_type, data)}}, ensure_ascii=False)
    return json.dumps({"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data},
                      ensure_ascii=False, separators=(",", ":"))


# --- the outbox: from the audit trail to deliveries --------------------------------------------------

def _subscribed(endpoint: WebhookEndpoint) -> set[str]:
    return set((endpoint.events or "").split())


def fan_out(shop: Shop, now: dt.datetime) -> int:
    """Make the deliveries of the audit events after the mark; return how many were made."""
    mark = RollupMark.get_or_none(RollupMark.name == MARK)
    after = mark.event_id if mark else 0
    endpoints = list(WebhookEndpoint.select())  # a paused one too: its deliveries wait for it (send_due)
    last = AuditEvent.select(fn.MAX(AuditEvent.id)).scalar() or 0
    if mark is None:  # the first run: from the oldest endpoint's start, nothing from before webhooks existed
        after = min((e.after_event for e in endpoints), default=last)
    if not endpoints:
        if mark is None or mark.event_id < last:
            with write_transaction():
                _move_mark(last, now, mark is not None)
        return 0
    # Materialise, then write (a live query iterated while writing is refused by SQLite's snapshot).
    events = list(AuditEvent.select(AuditEvent.id, AuditEvent.action, AuditEvent.order, AuditEvent.detail,
                                    AuditEvent.at)
                  .where((AuditEvent.id > max(0, after - LOOKBACK)) & (AuditEvent.id <= last)
                         & AuditEvent.action.in_(tuple(FROM_AUDIT)))
                  .order_by(AuditEvent.id))
    wanted = [(endpoint, event) for event in events for endpoint in endpoints
              if FROM_AUDIT[event.action] in _subscribed(endpoint) and event.id > endpoint.after_event]
    made = 0
    with write_transaction():
        have = {m for (m,) in WebhookDelivery.select(WebhookDelivery.message_id).where(
            WebhookDelivery.event_id > max(0, after - LOOKBACK)).tuples()}
        orders: dict[int, Order | None] = {}
        for endpoint, event in wanted:
            message_id = f"msg_{event.id}_{endpoint.id}"
            if message_id in have:
                continue
            if event.order_id not in orders:
                orders[event.order_id] = Order.get_or_none(Order.id == event.order_id) if event.order_id else None
            kind = FROM_AUDIT[event.action]
            data = event_data(kind, json.loads(event.detail or "{}"), orders[event.order_id])
            made += WebhookDelivery.insert(
                endpoint=endpoint.id, event_id=event.id, event_type=kind, message_id=message_id,
                body=message_body(endpoint.format, kind, data, event.at), created_at=now, state="pending",
                next_attempt_at=now).on_conflict_ignore().execute() and 1 or 0
        _move_mark(last, now, mark is not None)
    return made


def _move_mark(last: int, now: dt.datetime, exists: bool) -> None:
    if exists:
        RollupMark.update(event_id=last, updated_at=now).where(
            (RollupMark.name == MARK) & (RollupMark.event_id < last)).execute()
    else:
        RollupMark.insert(name=MARK, event_id=last, updated_at=now).on_conflict_ignore().execute()


def _headers(shop: Shop, endpoint: WebhookEndpoint, delivery: WebhookDelivery, now: dt.datetime) -> tuple[bytes, dict[str, str]]:
    """The bytes and headers of one attempt: signed at this attempt's time."""
    timestamp = int(now.timestamp())
    secret = unseal(shop, endpoint.sealed_secret)
    if endpoint.format == "feishu":
        body = json.loads(delivery.body)
        if secret:
            body.update(timestamp=str(timestamp), sign=feishu_sign(secret, timestamp))
        return json.dumps(body, ensure_ascii=False).encode(), {}
    raw = delivery.body.encode()
    if endpoint.format == "wecom":
        return raw, {}
    return raw, {"webhook-id": delivery.message_id, "webhook-timestamp": str(timestamp),
                 "webhook-signature": standard_signature(secret or "", delivery.message_id, timestamp, raw)}


def send_due(shop: Shop, now: dt.datetime, limit: int = SEND_PER_RUN) -> dict[str, int]:
    """Send the deliveries that are due, each claimed first; record each outcome and its next attempt."""
    due = list(WebhookDelivery.select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
               .join(WebhookEndpoint)
               .where((WebhookDelivery.state == "pending") & (WebhookDelivery.next_attempt_at <= now)
                      & (WebhookEndpoint.enabled == True))  # noqa: E712
               .order_by(WebhookDelivery.next_attempt_at).limit(limit))
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    targets = shop.config.webhook_targets if shop.config else "public"
    for row in due:
        with write_transaction():
            claimed = (WebhookDelivery.update(next_attempt_at=now + CLAIM)
                       .where((WebhookDelivery.id == row.id) & (WebhookDelivery.state == "pending")
                              & (WebhookDelivery.next_attempt_at == row.next_attempt_at)).execute())
        if not claimed:
            continue  # another process has it
        delivery = WebhookDelivery.get_by_id(row.id)
        endpoint = WebhookEndpoint.get_by_id(delivery.endpoint_id)
        body, headers = _headers(shop, endpoint, delivery, now)
        outcome = post(endpoint.url, body, headers, targets)  # outside any transaction
        if outcome.ok and endpoint.format in BOT_HOSTS:
            refusal = _bot_refusal(endpoint.format, outcome.response)
            if refusal is not None:
                outcome = Outcome(False, outcome.status, outcome.response, refusal)
        counts[_record(delivery, outcome, now)] += 1
    return counts


def _record(delivery: WebhookDelivery, outcome: Outcome, now: dt.datetime) -> str:
    attempts = delivery.attempts + 1
    fields: dict[str, Any] = {"attempts": attempts, "last_attempt_at": now, "last_status": outcome.status,
                              "last_error": outcome.error, "last_response": outcome.response[:300] or None}
    if outcome.ok:
        fields.update(state="delivered", next_attempt_at=None, delivered_at=now)
        result = "delivered"
    elif outcome.permanent or attempts >= MAX_ATTEMPTS:
        fields.update(state="failed", next_attempt_at=None)
        result = "failed"
    else:
        fields.update(next_attempt_at=now + BACKOFF[attempts - 1])
        result = "retrying"
    with write_transaction():
        WebhookDelivery.update(**fields).where(WebhookDelivery.id == delivery.id).execute()
    return result


def forget_old(shop: Shop, now: dt.datetime) -> int:
    """Delete finished deliveries older than the retention period (their bodies hold buyers' e-mail addresses)."""
    before = now - dt.timedelta(days=shop.config.retention_days)
    old = (WebhookDelivery.select(WebhookDelivery.id).where(
        (WebhookDelivery.created_at < before) & (WebhookDelivery.state != "pending")).limit(500))
    ids = [row.id for row in old]
    if not ids:
        return 0
    with write_transaction():
        return int(WebhookDelivery.delete().where(WebhookDelivery.id.in_(ids)).execute())


def webhooks_job(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """The scheduler's job: new events into deliveries, then send what is due, then forget old ones."""
    made = fan_out(shop, now)
    sent = send_due(shop, now)
    forgotten = forget_old(shop, now)
    return {"made": made, **{k: v for k, v in sent.items() if v}, **({"forgotten": forgotten} if forgotten else {})}


# --- the creator's side ------------------------------------------------------------------------------

def _events_from(events: Any) -> str:
    chosen = [e for e in EVENTS if e in set(events or ())]
    unknown = set(events or ()) - set(EVENTS)
    if unknown:
        raise BillingError("bad_request", f"unknown events: {', '.join(sorted(unknown))[:100]}")
    if not chosen:
        raise BillingError("bad_request", "choose at least one event")
    return " ".join(chosen)


@dataclass(frozen=True)
class MadeEndpoint:
    """A new endpoint and its signing secret, shown to the creator once."""

    endpoint: WebhookEndpoint
    secret: str | None


def create_endpoint(shop: Shop, *, url: str, fmt: str, events: Any, description: str = "",
                    bot_secret: str | None = None, actor: str, now: dt.datetime, ip: str | None = None) -> MadeEndpoint:
    """Add an endpoint (a signing secret is made for the standard format); audited."""
    targets = shop.config.webhook_targets if shop.config else "public"
    url = check_url(url, fmt, targets)
    chosen = _events_from(events)
    secret = new_secret() if fmt == "standard" else ((bot_secret or "").strip() or None)
    if secret is not None and len(secret) > 100:
        raise BillingError("bad_request", "the bot's secret is at most 100 characters")
    with write_transaction():
        if WebhookEndpoint.select().count() >= MAX_ENDPOINTS:
            raise BillingError("bad_request", f"at most {MAX_ENDPOINTS} endpoints")
        last = AuditEvent.select(fn.MAX(AuditEvent.id)).scalar() or 0
        endpoint = WebhookEndpoint.create(url=url, format=fmt, events=chosen, description=(description or "")[:120],
                                          sealed_secret=seal(shop, secret) if secret else None, enabled=True,
                                          created_at=now, created_by=actor, after_event=last)
        audit.record("webhook.created", at=now, actor=actor, ip=ip, detail={
            "endpoint": endpoint.id, "host": urlsplit(url).hostname, "format": fmt, "events": chosen})
    return MadeEndpoint(endpoint, secret if fmt == "standard" else None)


def set_enabled(endpoint_id: int, enabled: bool, *, actor: str, now: dt.datetime, ip: str | None = None) -> WebhookEndpoint:
    """Pause an endpoint (nothing is sent; deliveries wait) or turn it on again; audited."""
    with write_transaction():
        endpoint = find(endpoint_id)
        changed = WebhookEndpoint.update(enabled=enabled).where(
            (WebhookEndpoint.id == endpoint.id) & (WebhookEndpoint.enabled == (not enabled))).execute()
        if changed:
            audit.record("webhook.enabled" if enabled else "webhook.disabled", at=now, actor=actor, ip=ip,
                         detail={"endpoint": endpoint.id})
        return WebhookEndpoint.get_by_id(endpoint.id)


def delete_endpoint(endpoint_id: int, *, actor: str, now: dt.datetime, ip: str | None = None) -> None:
    """Remove an endpoint and its delivery log; audited."""
    with write_transaction():
        endpoint = find(endpoint_id)
        WebhookDelivery.delete().where(WebhookDelivery.endpoint == endpoint.id).execute()
        WebhookEndpoint.delete().where(WebhookEndpoint.id == endpoint.id).execute()
        audit.record("webhook.deleted", at=now, actor=actor, ip=ip,
                     detail={"endpoint": endpoint.id, "host": urlsplit(endpoint.url).hostname})


def send_again(delivery_id: int, *, actor: str, now: dt.datetime, ip: str | None = None) -> WebhookDelivery:
    """Queue a delivery once more (same body and webhook-id), sent by the job's next run; audited."""
    with write_transaction():
        delivery = WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_id)
        if delivery is None:
            raise BillingError("not_found")
        WebhookDelivery.update(state="pending", next_attempt_at=now).where(WebhookDelivery.id == delivery.id).execute()
        audit.record("webhook.resent", at=now, actor=actor, ip=ip,
                     detail={"endpoint": delivery.endpoint_id, "delivery": delivery.id, "event": delivery.event_type})
        return WebhookDelivery.get_by_id(delivery.id)


def send_test(shop: Shop, endpoint_id: int, *, actor: str, now: dt.datetime, ip: str | None = None) -> WebhookDelivery:
    """Queue a test message to an endpoint (event type ``webhook.test``), sent by the job's next run."""
    with write_transaction():
        endpoint = find(endpoint_id)
        data = {"message": "Learning Buddy Pay test message", "endpoint": endpoint.id}
        delivery = WebhookDelivery.create(
            endpoint=endpoint.id, event_id=0, event_type="webhook.test", message_id="msg_test_" + secrets.token_hex(8),
            body=message_body(endpoint.format, "webhook.test", data, now), created_at=now, state="pending",
            next_attempt_at=now)
        audit.record("webhook.test", at=now, actor=actor, ip=ip, detail={"endpoint": endpoint.id})
        return delivery


def find(endpoint_id: int) -> WebhookEndpoint:
    """One endpoint, or ``not_found``."""
    endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.id == endpoint_id)
    if endpoint is None:
        raise BillingError("not_found")
    return endpoint


def secret_of(shop: Shop, endpoint: WebhookEndpoint) -> str | None:
    """The endpoint's signing secret, for the creator's eyes on its console page."""
    return unseal(shop, endpoint.sealed_secret)


@dataclass(frozen=True)
class EndpointSummary:
    """One endpoint as the console lists it."""

    endpoint: WebhookEndpoint
    delivered: int
    pending: int
    failed: int
    last_attempt_at: dt.datetime | None

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint.url).hostname or ""


def endpoints() -> list[EndpointSummary]:
    """Every endpoint with its deliveries counted by state."""
    counts: dict[tuple[int, str], int] = {}
    last: dict[int, dt.datetime] = {}
    for endpoint_id, state, n in (WebhookDelivery.select(WebhookDelivery.endpoint, WebhookDelivery.state,
                                                         fn.COUNT(WebhookDelivery.id))
                                  .group_by(WebhookDelivery.endpoint, WebhookDelivery.state).tuples()):
        counts[(endpoint_id, state)] = n
    for endpoint_id, at in (WebhookDelivery.select(WebhookDelivery.endpoint, fn.MAX(WebhookDelivery.last_attempt_at))
                            .group_by(WebhookDelivery.endpoint).tuples()):
        if at is not None:
            last[endpoint_id] = WebhookDelivery.last_attempt_at.python_value(at)
    return [EndpointSummary(e, counts.get((e.id, "delivered"), 0), counts.get((e.id, "pending"), 0),
                            counts.get((e.id, "failed"), 0), last.get(e.id))
            for e in WebhookEndpoint.select().order_by(WebhookEndpoint.id)]


def deliveries(endpoint_id: int, limit: int = 100) -> list[WebhookDelivery]:
    """An endpoint's delivery log, newest first."""
    return list(WebhookDelivery.select().where(WebhookDelivery.endpoint == endpoint_id)
                .order_by(WebhookDelivery.id.desc()).limit(limit))


def delivery(delivery_id: int) -> WebhookDelivery:
    """One delivery, or ``not_found``."""
    found = WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_id)
    if found is None:
        raise BillingError("not_found")
    return found
