"""The one choke point for calls to WeChat Pay: signed requests, verified answers, bounded retries."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from . import crypto
from .bills import TradeBill, parse_trade_bill
from .errors import (
    ApiError,
    BillIntegrityError,
    BillNotReady,
    MalformedError,
    NoBill,
    NoCertificates,
    TransportError,
    VerificationError,
    WeChatPayError,
)
from .fields import ATTACH_BYTES, DESCRIPTION_BYTES, REFUND_REASON_BYTES, check_utf8, fit_utf8
from .notify import decrypt_certificates
from .verifier import (
    HEADER_SERIAL,
    CertificateStore,
    CombinedVerifier,
    PlatformVerifier,
    Verifier,
    is_probe,
    verify_signed,
)

log = logging.getLogger(__name__)

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
BEIJING = timezone(timedelta(hours=8))
RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "BANK_ERROR", "FREQUENCY_LIMITED"})
MAX_BACKOFF = 10.0
MAIN_HOST = "https://api.mch.weixin.qq.com"
BACKUP_HOST = "https://api2.mch.weixin.qq.com"
# The default backup_base: api2 when talking to the production host, none otherwise (a
# simulator or proxy has no second region, and a test must never fail over to the Internet).
AUTO_BACKUP = "auto"

# What ``serial_status`` reports about the public-key id we send as Wechatpay-Serial.
SERIAL_NOT_SENT = "not_sent"
SERIAL_UNCONFIRMED = "unconfirmed"
SERIAL_CONFIRMED = "confirmed"
SERIAL_REJECTED = "rejected"
# An order number we never use: querying it is the harmless question of the serial check.
SERIAL_CHECK_ORDER = "LBPAY_SERIAL_CHECK"


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


def _split_base(name: str, base: str) -> tuple[str, str]:
    """Split an API base URL into its origin and path prefix."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{name} must be an http(s) URL without query: {base!r}")
    # A prefix (e.g. a simulator mounted under /wechat) is part of the URL WeChat signs over.
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def _mentions_serial(error: ApiError) -> bool:
    """Tell whether a 4xx answer is about the Wechatpay-Serial header we sent."""
    text = (error.message + " " + json.dumps(error.detail, ensure_ascii=False)).lower()
    return "wechatpay-serial" in text or "serial" in text or "序列号" in text or "公钥" in text


def _no_certificates(error: ApiError) -> bool:
    """Tell whether WeChat answered /v3/certificates with "this merchant has none" (证书不存在, 无可用的平台证书)."""
    return error.status == 404 or "证书不存在" in error.message or "无可用的平台证书" in error.message


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


class _Probe(Exception):
    """A 2xx answer with WeChat's deliberate ``WECHATPAY/SIGNTEST/`` signature; carries the verification error."""

    def __init__(self, error: VerificationError) -> None:
        super().__init__(str(error))
        self.error = error


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
        backup_base: str | None = AUTO_BACKUP,
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
        self._hosts = [_split_base("api_base", api_base)]
        if backup_base == AUTO_BACKUP:
            backup_base = BACKUP_HOST if api_base.rstrip("/") == MAIN_HOST else None
        if backup_base is not None:
            self._hosts.append(_split_base("backup_base", backup_base))
        self.mchid = mchid
        self.appid = appid
        self._merchant_serial = merchant_serial
        self._merchant_key = merchant_key
        self._verifier = verifier
        self._apiv3_keys = tuple(apiv3_keys)
        if public_key_id is None and isinstance(verifier, PlatformVerifier):
            public_key_id = verifier.request_serial
        self._public_key_id = public_key_id
        # A certificate store made without a download source is filled through this client.
        store = verifier.certificates if isinstance(verifier, PlatformVerifier) else verifier
        if isinstance(store, CertificateStore) and not store.has_source:
            store.set_source(self.download_certificates)
        self.serial_status = SERIAL_UNCONFIRMED if public_key_id else SERIAL_NOT_SENT
        self.serial_problem: str | None = None
        # Counters for metrics: probe answers retried, calls moved to the backup host.
        self.probe_retries = 0
        self.failovers = 0
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
        """Place a Native order and return the ``code_url`` to show as a QR code.

        ``description`` and ``attach`` are fitted to WeChat's byte limits (127 and 128
        UTF-8 bytes, basic-plane characters only) with ``fit_utf8``; placing the same
        order again with identical arguments (same ``time_expire``) returns a current
        ``code_url`` (each lives 2 hours).
        """
        fitted = fit_utf8(description, DESCRIPTION_BYTES)
        if not fitted.strip():
            raise ValueError("description has no character WeChat Pay accepts")
        payload: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": fitted,
            "out_trade_no": out_trade_no,
            "time_expire": format_time(time_expire),
        }
        if attach is not None:
            payload["attach"] = fit_utf8(attach, ATTACH_BYTES)
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
        """Ask for a refund of part or all of an order and return the Refund object (usually PROCESSING).

        A ``reason`` over 80 UTF-8 bytes, or with a character outside the basic plane,
        raises FieldError before anything is sent: the learner sees it as typed or not at all.
        """
        payload: dict[str, Any] = {"out_trade_no": out_trade_no, "out_refund_no": out_refund_no}
        if reason is not None:
            payload["reason"] = check_utf8("reason", reason, REFUND_REASON_BYTES)
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

    def apply_abnormal_refund(
        self,
        *,
        refund_id: str,
        out_refund_no: str,
        kind: str,
        bank_type: str | None = None,
        bank_account: str | None = None,
        real_name: str | None = None,
    ) -> dict[str, Any]:
        """Resolve an ABNORMAL refund: ``USER_BANK_CARD`` (to the user's card) or ``MERCHANT_BANK_CARD``.

        For the user's card, ``bank_account`` and ``real_name`` are encrypted with the WeChat Pay
        public key whose id goes out as ``Wechatpay-Serial``; the refund then goes PROCESSING → SUCCESS.
        """
        payload: dict[str, Any] = {"out_refund_no": out_refund_no, "type": kind}
        if kind == "USER_BANK_CARD":
            key = self._verifier.public_key_for(self._public_key_id) if self._public_key_id else None
            if key is None or not (bank_type and bank_account and real_name):
                raise ValueError("a refund to the user's bank card needs the WeChat Pay public key, "
                                 "bank_type, bank_account and real_name")
            payload.update(bank_type=bank_type, bank_account=crypto.encrypt_sensitive(key, bank_account),
                           real_name=crypto.encrypt_sensitive(key, real_name))
        elif kind != "MERCHANT_BANK_CARD":
            raise ValueError("kind must be USER_BANK_CARD or MERCHANT_BANK_CARD")
        path = f"/v3/refund/domestic/refunds/{_segment(refund_id)}/apply-abnormal-refund"
        return self._call("POST", path, body=payload).json_object()

    # --- platform certificates ------------------------------------------------------------

    def download_certificates(self) -> list[x509.Certificate]:
        """Download and decrypt the platform certificates, verifying the answer even on first use."""
        try:
            answer = self._call("GET", "/v3/certificates", verify=False)
        except ApiError as exc:
            if _no_certificates(exc):
                raise NoCertificates(exc.status, exc.code, exc.message, exc.detail, kind="rejected") from exc
            raise
        certificates = decrypt_certificates(answer.body, self._apiv3_keys)
        # Bootstrap: a certificate we can only have got from a body encrypted with our APIv3 key
        # may vouch for the answer that carried it, but only when the verifier doesn't know the serial.
        carried = CertificateStore(certificates)
        verify_signed(answer.headers, answer.body, CombinedVerifier(self._verifier, carried), self._clock())
        return certificates

    # --- bills ---------------------------------------------------------------------------

    def trade_bill_text(self, bill_date: date, *, compressed: bool = True) -> str:
        """Download the day's trade bill (``bill_type=ALL``) and return its text, integrity-checked.

        Raises BillNotReady (400 STATEMENT_CREATING: ask again later), NoBill (400
        NO_STATEMENT_EXIST: nothing happened that day, or asked before it is published)
        or BillIntegrityError (the SHA1 ``hash_value`` does not match).
        """
        query = {"bill_date": bill_date.isoformat(), "bill_type": "ALL"}
        if compressed:
            query["tar_type"] = "GZIP"
        try:
            document = self._call("GET", "/v3/bill/tradebill", query=query).json_object()
        except ApiError as exc:
            if exc.code == "STATEMENT_CREATING":
                raise BillNotReady(exc.status, exc.code, exc.message, exc.detail, kind="rejected") from exc
            if exc.code == "NO_STATEMENT_EXIST":
                raise NoBill(exc.status, exc.code, exc.message, exc.detail, kind="rejected") from exc
            raise
        download_url = document.get("download_url")
        hash_type = document.get("hash_type", "SHA1")
        hash_value = document.get("hash_value")
        if not isinstance(download_url, str) or not isinstance(hash_value, str):
            raise MalformedError("trade bill answer has no download_url or hash_value")
        if hash_type != "SHA1":
            raise MalformedError(f"unsupported bill hash_type {str(hash_type)[:20]!r}")
        # The download answer is the file itself and carries no WeChat signature; the hash is the proof.
        raw = self._call("GET", self._relative(download_url), verify=False).body
        if compressed:
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                raise BillIntegrityError("the bill is not valid gzip") from exc
        # hash_value is the digest of the bill as published, after decompression.
        if hashlib.sha1(raw).hexdigest() != hash_value.lower():
            raise BillIntegrityError("the bill does not match its SHA1 hash_value")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BillIntegrityError("the bill is not UTF-8 text") from exc

    def trade_bill(self, bill_date: date, *, compressed: bool = True) -> TradeBill:
        """Download and parse the day's trade bill (payments and refunds, amounts in fen).

        Read leniently: a line that does not fit is kept in ``unreadable`` and the rest is read.
        """
        return parse_trade_bill(self.trade_bill_text(bill_date, compressed=compressed), lenient=True)

    def _relative(self, url: str) -> str:
        """Return a WeChat-issued absolute URL as a path on one of our hosts; refuse any other host."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        for host_origin, prefix in self._hosts:
            if origin.lower() == host_origin.lower() and parts.path.startswith(prefix + "/"):
                # Our Authorization header must never be sent to a host WeChat did not give us.
                return parts.path[len(prefix):] + (f"?{parts.query}" if parts.query else "")
        raise MalformedError(f"download_url is not on a WeChat Pay host: {url[:120]!r}")

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
        wire: tuple[bytes, str] | None = None,
    ) -> _Answer:
        """Send one logical request, retrying transient failures and probes with the same body.

        Every call we make is idempotent (order and refund numbers are WeChat's idempotency
        keys), so a timeout, a 5xx or a deliberate probe signature may be re-sent as is.
        ``wire`` is the body actually sent and its Content-Type when it is not the signed JSON
        (an image upload: the signature covers only its ``meta`` JSON).
        """
        url = path + (f"?{urlencode(query)}" if query else "")
        # Dumped once so every attempt sends (and signs) identical bytes with the same order numbers.
        data = _dump(body) if body is not None else b""
        limit = min(attempts, self._max_attempts) if attempts else self._max_attempts
        probe_retried = False
        attempt = 1
        while True:
            try:
                return self._attempt_hosts(method, url, data, has_body=body is not None, verify=verify, wire=wire)
            except _Probe as probe:
                # WeChat's probe expects a failed verification; the same call answers correctly next time.
                if probe_retried:
                    raise probe.error from None
                probe_retried = True
                self.probe_retries += 1
                continue
            except ApiError as exc:
                if exc.retryable and attempt < limit:
                    pass
                else:
                    # A caller that asked for a single try (a status poll) gets no extra diagnostic call.
                    raise self._classify(exc, diagnose=limit > 1) from None
            except WeChatPayError as exc:
                if not exc.retryable or attempt >= limit:
                    raise
            # Full jitter: spreads retries from many workers instead of synchronising them.
            cap = min(MAX_BACKOFF, self._backoff * 2 ** (attempt - 1))
            self._sleep(random.uniform(0, cap))
            attempt += 1

    def _classify(self, exc: ApiError, *, diagnose: bool) -> ApiError:
        """Tell a refused Wechatpay-Serial (a configuration error) from an outage or a business refusal."""
        if not self._public_key_id:
            return exc
        if 400 <= exc.status < 500 and _mentions_serial(exc):
            return self._serial_rejected(exc, f"WeChat Pay refuses Wechatpay-Serial {self._public_key_id}")
        if diagnose and exc.status == 500 and exc.code == "SYSTEM_ERROR" and self.serial_status != SERIAL_CONFIRMED:
            # WeChat answers a wrong public-key id with 500 SYSTEM_ERROR. Until an answer has
            # confirmed the id, ask a harmless question without it and with it: only the id differs.
            if self._serial_refused():
                return self._serial_rejected(
                    exc, f"WeChat Pay answers 500 only when Wechatpay-Serial {self._public_key_id} is sent: "
                    "the public-key id is probably wrong")
        return exc

    def _serial_refused(self) -> bool:
        """Query an order that does not exist without and with our public-key id; tell whether only the id fails."""
        url = f"/v3/pay/transactions/out-trade-no/{SERIAL_CHECK_ORDER}?{urlencode({'mchid': self.mchid})}"
        outcomes: list[int] = []
        for send_serial in (False, True):
            try:
                outcomes.append(self._attempt_hosts("GET", url, b"", has_body=False, verify=False,
                                                    send_serial=send_serial).status)
            except ApiError as answer:
                outcomes.append(answer.status)
            except WeChatPayError:
                return False
            if outcomes[0] >= 500:
                return False  # WeChat fails without the id as well: an outage, not our id
        without, with_serial = outcomes
        if without < 500 and with_serial < 500:
            self.serial_status = SERIAL_CONFIRMED
        return without < 500 <= with_serial

    def _serial_rejected(self, exc: ApiError, problem: str) -> ApiError:
        self.serial_status = SERIAL_REJECTED
        self.serial_problem = problem
        log.error("%s (%s %s)", problem, exc.code, exc.message)
        return ApiError(exc.status, exc.code, f"{exc.message} ({problem})", exc.detail, retryable=False,
                        about_serial=True)

    def _attempt_hosts(
        self, method: str, url: str, data: bytes, *, has_body: bool, verify: bool, send_serial: bool = True,
        wire: tuple[bytes, str] | None = None,
    ) -> _Answer:
        """Try the main host, then the backup host after a connection error or timeout (as the official SDKs do)."""
        for index, (origin, prefix) in enumerate(self._hosts):
            try:
                return self._attempt(origin, prefix + url, method, data, has_body=has_body, verify=verify,
                                     send_serial=send_serial, wire=wire)
            except TransportError as exc:
                if not exc.retryable or index + 1 >= len(self._hosts):
                    raise
                self.failovers += 1
                log.warning("%s %s failed on %s (%s); trying %s", method, url, origin, exc, self._hosts[index + 1][0])
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, origin: str, url: str, method: str, data: bytes, *, has_body: bool, verify: bool, send_serial: bool,
        wire: tuple[bytes, str] | None = None,
    ) -> _Answer:
        request = requests.Request(method, origin + url, data=(wire[0] if wire else data) if has_body else None)
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
            headers["Content-Type"] = wire[1] if wire else "application/json"
        if self._public_key_id and send_serial:
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
            # A 2xx without a valid signature may be forged; re-sending would not make it genuine,
            # unless it is one of WeChat's announced probes.
            try:
                verify_signed(response.headers, content, self._verifier, self._clock())
            except VerificationError as exc:
                if is_probe(response.headers):
                    raise _Probe(exc) from exc
                raise
            if self._public_key_id and send_serial and self.serial_status == SERIAL_UNCONFIRMED:
                self.serial_status = SERIAL_CONFIRMED
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

