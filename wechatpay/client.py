"""The one choke point for calls to WeChat Pay: signed requests, verified answers, bounded retries."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from . import crypto
from .errors import ApiError, MalformedError, TransportError, WeChatPayError
from .notify import decrypt_certificates
from .verifier import HEADER_SERIAL, CertificateStore, CombinedVerifier, Verifier, verify_signed

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
BEIJING = timezone(timedelta(hours=8))
RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "BANK_ERROR", "FREQUENCY_LIMITED"})
MAX_BACKOFF = 10.0


def authorization_header(
    *,
    mchid: str,
    serial_no: str,
    private_key: RSAPrivateKey,
    method: str,
    canonical_url: str,
    body: bytes,
    timestamp: str,
    nonce: str,
) -> str:
    """Return the ``Authorization`` value for one request, signed over exactly these bytes."""
    message = crypto.request_message(method, canonical_url, timestamp, nonce, body)
    signature = crypto.sign(private_key, message)
    return (
        f'{AUTH_SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def format_time(moment: datetime) -> str:
    """Format an aware datetime as WeChat Pay wants it: RFC 3339 in +08:00, whole seconds."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("time must be timezone-aware")
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def _segment(value: str) -> str:
    if not value:
        raise ValueError("path segment must not be empty")
    # safe="" so "/" or "?" in an id cannot change which resource is addressed.
    return quote(value, safe="")


def _fen(name: str, value: int) -> int:
    # bool is an int subclass; True fen is a bug, not one fen.
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int of fen, got {value!r}")
    return value


def _dump(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Answer:
    """A verified 2xx answer: status, headers and raw body."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json_object(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except (ValueError, RecursionError) as exc:
            raise MalformedError("response body is not JSON") from exc
        if not isinstance(value, dict):
            raise MalformedError("response body is not a JSON object")
        return value


def _api_error(status: int, body: bytes) -> ApiError:
    code, message, detail = f"HTTP_{status}", "", None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("code"), str):
        code = document["code"]
        text = document.get("message")
        message = text if isinstance(text, str) else ""
        detail = document.get("detail")
    else:
        message = body[:200].decode("utf-8", "replace")
    retryable = status == 429 or status >= 500 or code in RETRYABLE_CODES
    return ApiError(status, code, message, detail, retryable)


class WeChatPayClient:
    """A merchant's APIv3 client for Native payment, query, close, refunds and certificates."""

    def __init__(
        self,
        *,
        api_base: str,
        mchid: str,
        appid: str,
        merchant_serial: str,
        merchant_key: RSAPrivateKey,
        verifier: Verifier,
        apiv3_keys: Sequence[bytes],
        public_key_id: str | None = None,
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 5.0,
        max_attempts: int = 3,
        backoff: float = 0.2,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "LearningBuddyPay/0.1 (python)",
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        parts = urlsplit(api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"api_base must be an http(s) URL without query: {api_base!r}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        # A prefix (e.g. a simulator mounted under /wechat) is part of the URL WeChat signs over.
        self._prefix = parts.path.rstrip("/")
        self.mchid = mchid
        self.appid = appid
        self._merchant_serial = merchant_serial
        self._merchant_key = merchant_key
        self._verifier = verifier
        self._apiv3_keys = tuple(apiv3_keys)
        self._public_key_id = public_key_id
        self._session = session if session is not None else requests.Session()
        self._timeout = (connect_timeout, read_timeout)
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._clock = clock
        self._sleep = sleep
        self._user_agent = user_agent
        self.last_response_date: datetime | None = None
        self.last_clock_skew: float | None = None

    # --- payments -------------------------------------------------------------------------

    def create_native_order(
        self,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        notify_url: str,
        time_expire: datetime,
        attach: str | None = None,
    ) -> str:
        """Place a Native order and return the ``code_url`` to show as a QR code."""
        payload: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": format_time(time_expire),
        }
        if attach is not None:
            payload["attach"] = attach
        payload["notify_url"] = notify_url
        payload["amount"] = {"total": _fen("amount_fen", amount_fen), "currency": "CNY"}
        answer = self._call("POST", "/v3/pay/transactions/native", body=payload)
        code_url = answer.json_object().get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise MalformedError("native order answer has no code_url")
        return code_url

    def query_by_out_trade_no(self, out_trade_no: str, *, attempts: int | None = None) -> dict[str, Any]:
        """Return the transaction object for our order number (``attempts`` caps the retries)."""
        path = f"/v3/pay/transactions/out-trade-no/{_segment(out_trade_no)}"
        return self._call("GET", path, query={"mchid": self.mchid}, attempts=attempts).json_object()

    def query_by_transaction_id(self, transaction_id: str) -> dict[str, Any]:
        """Return the transaction object for WeChat Pay's transaction id."""
        path = f"/v3/pay/transactions/id/{_segment(transaction_id)}"
        return self._call("GET", path, query={"mchid": self.mchid}).json_object()

    def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order so it can no longer be paid."""
        path = f"/v3/pay/transactions/out-trade-no/{_segment(out_trade_no)}/close"
        self._call("POST", path, body={"mchid": self.mchid})

    # --- refunds --------------------------------------------------------------------------

    def create_refund(
        self,
        *,
        out_refund_no: str,
        out_trade_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str | None,
        notify_url: str,
    ) -> dict[str, Any]:
        """Ask for a refund of part or all of an order and return the Refund object (usually PROCESSING)."""
        payload: dict[str, Any] = {"out_trade_no": out_trade_no, "out_refund_no": out_refund_no}
        if reason is not None:
            payload["reason"] = reason
        payload["notify_url"] = notify_url
        payload["amount"] = {
            "refund": _fen("refund_fen", refund_fen),
            "total": _fen("total_fen", total_fen),
            "currency": "CNY",
        }
        return self._call("POST", "/v3/refund/domestic/refunds", body=payload).json_object()

    def query_refund(self, out_refund_no: str) -> dict[str, Any]:
        """Return the Refund object for our refund number."""
        path = f"/v3/refund/domestic/refunds/{_segment(out_refund_no)}"
        return self._call("GET", path).json_object()

    # --- platform certificates ------------------------------------------------------------

    def download_certificates(self) -> list[x509.Certificate]:
        """Download and decrypt the platform certificates, verifying the answer even on first use."""
        answer = self._call("GET", "/v3/certificates", verify=False)
        certificates = decrypt_certificates(answer.body, self._apiv3_keys)
        # Bootstrap: a certificate we can only have got from a body encrypted with our APIv3 key
        # may vouch for the answer that carried it, but only when the verifier doesn't know the serial.
        carried = CertificateStore(certificates)
        verify_signed(answer.headers, answer.body, CombinedVerifier(self._verifier, carried), self._clock())
        return certificates

    # --- transport ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        verify: bool = True,
        attempts: int | None = None,
    ) -> _Answer:
        """Send one logical request, retrying transient failures with the same body."""
        url = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        # Dumped once so every attempt sends (and signs) identical bytes with the same order numbers.
        data = _dump(body) if body is not None else b""
        limit = min(attempts, self._max_attempts) if attempts else self._max_attempts
        for attempt in range(1, limit + 1):
            try:
                return self._attempt(method, url, data, has_body=body is not None, verify=verify)
            except WeChatPayError as exc:
                if not exc.retryable or attempt >= limit:
                    raise
            # Full jitter: spreads retries from many workers instead of synchronising them.
            cap = min(MAX_BACKOFF, self._backoff * 2 ** (attempt - 1))
            self._sleep(random.uniform(0, cap))
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, method: str, url: str, data: bytes, *, has_body: bool, verify: bool) -> _Answer:
        request = requests.Request(method, self._origin + url, data=data if has_body else None)
        prepared = self._session.prepare_request(request)
        # Sign what requests will put on the wire, not what we hoped it would.
        canonical_url = prepared.path_url
        timestamp = str(int(self._clock()))
        headers = {
            "Authorization": authorization_header(
                mchid=self.mchid,
                serial_no=self._merchant_serial,
                private_key=self._merchant_key,
                method=method,
                canonical_url=canonical_url,
                body=data,
                timestamp=timestamp,
                nonce=crypto.make_nonce(),
            ),
            "Accept": "application/json",
            "User-Agent": self._user_agent,
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        if self._public_key_id:
            headers[HEADER_SERIAL] = self._public_key_id
        prepared.headers.update(headers)
        # What Session.request would add (proxies, CA bundle) had we not needed the prepared URL first.
        settings = self._session.merge_environment_settings(prepared.url or "", {}, None, None, None)
        try:
            response = self._session.send(prepared, timeout=self._timeout, allow_redirects=False, **settings)
            content = response.content
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransportError(f"{method} {url}: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            error = TransportError(f"{method} {url}: {type(exc).__name__}")
            error.retryable = False
            raise error from exc
        raw_headers: Any = getattr(response.raw, "headers", None)
        getlist = getattr(raw_headers, "getlist", None)
        dates = list(getlist("Date")) if getlist is not None else [response.headers.get("Date")]
        # A server stack may add a Date of its own before the application's; the last one is WeChat's.
        self._note_date(dates[-1] if dates else None)

        status = response.status_code
        if not 200 <= status < 300:
            raise _api_error(status, content)
        if verify:
            # A 2xx without a valid signature may be forged; re-sending would not make it genuine.
            verify_signed(response.headers, content, self._verifier, self._clock())
        return _Answer(status, response.headers, content)

    def _note_date(self, value: str | None) -> None:
        """Remember WeChat's Date header so callers can alert on our clock drifting."""
        if not value:
            return
        try:
            date = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return
        if date.tzinfo is None:
            date = date.replace(tzinfo=timezone.utc)
        self.last_response_date = date
        self.last_clock_skew = self._clock() - date.timestamp()

