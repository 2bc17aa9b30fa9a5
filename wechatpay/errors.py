"""Typed errors raised by the WeChat Pay protocol code."""

from __future__ import annotations


class WeChatPayError(Exception):
    """Base class of every error raised by this package."""

    retryable: bool = False


class ConfigError(WeChatPayError):
    """A setting is missing or unusable; raised at start-up, naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class VerificationError(WeChatPayError):
    """A signed message (notification or response) could not be authenticated.

    ``reason`` is a short stable word: ``missing_header``, ``bad_header``,
    ``unknown_serial``, ``stale_timestamp``, ``bad_signature``,
    ``bad_signature_type``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecryptError(WeChatPayError):
    """An AES-256-GCM resource failed to decrypt (wrong key, tampered data)."""


class UnexpectedPlaintextError(DecryptError):
    """A resource decrypted, but its plaintext is not the JSON object or certificate expected."""


class MalformedError(WeChatPayError):
    """A verified message did not have the expected shape."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FieldError(WeChatPayError, ValueError):
    """A text field would be refused by WeChat Pay (too many UTF-8 bytes, or a character it does not take).

    ``problem`` is ``too_long`` or ``unsupported_character``; ``limit`` and ``length``
    are in UTF-8 bytes, and ``character`` is the refused character, if that is the problem.
    """

    def __init__(self, field: str, problem: str, limit: int, length: int, character: str = "") -> None:
        if problem == "too_long":
            text = f"{field} is {length} UTF-8 bytes, more than the {limit} WeChat Pay accepts"
        else:
            text = f"{field} contains U+{ord(character):04X}, a character WeChat Pay does not accept"
        super().__init__(text)
        self.field = field
        self.problem = problem
        self.limit = limit
        self.length = length
        self.character = character


# What an ApiError means for the caller; see ApiError.kind.
KIND_UNAVAILABLE = "unavailable"
KIND_CONFIG = "config"
KIND_REJECTED = "rejected"

# Codes that say our request or our merchant setup is wrong: retrying cannot help, the shop must fix it.
# The 403s of Native下单 (ACCOUNT_ERROR, NO_AUTH, RULE_LIMIT, TRADE_ERROR, OUT_TRADE_NO_USED) are among
# them: none passes with time, so none may tell a learner "WeChat is down, retry in 10 s".
CONFIG_CODES = frozenset({
    "PARAM_ERROR", "INVALID_REQUEST", "APPID_MCHID_NOT_MATCH", "MCH_NOT_EXISTS", "SIGN_ERROR",
    "NO_AUTH", "ACCOUNT_ERROR", "RULE_LIMIT", "TRADE_ERROR", "OUT_TRADE_NO_USED",
})
# 403s that are the state of one order or refund, not of the shop: waiting (or the learner) can change them.
STATE_403_CODES = frozenset({"NOT_ENOUGH", "USER_ACCOUNT_ABNORMAL"})


class ApiError(WeChatPayError):
    """WeChat Pay answered a call with an error status and body.

    ``kind`` says what it means for the caller: ``unavailable`` (5xx, 429: retry later
    with the same ids), ``config`` (our request or merchant setup is wrong — PARAM_ERROR,
    SIGN_ERROR, a refused ``Wechatpay-Serial``…: the shop must fix something, never
    "WeChat is down") or ``rejected`` (a valid request refused by the order's state:
    ORDER_CLOSED, ORDER_NOT_EXIST, NOT_ENOUGH…). ``about_serial`` marks a configuration
    error caused by the ``Wechatpay-Serial`` we send (the public-key id).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: object = None,
        retryable: bool = False,
        kind: str | None = None,
        about_serial: bool = False,
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.retryable = retryable
        if kind is None:
            refused = code in CONFIG_CODES or (status == 403 and code not in STATE_403_CODES)
            kind = KIND_UNAVAILABLE if retryable else KIND_CONFIG if refused else KIND_REJECTED
        self.kind = KIND_CONFIG if about_serial else kind
        self.about_serial = about_serial

    @property
    def is_config_error(self) -> bool:
        """Tell whether the shop's configuration or data must change before this call can succeed."""
        return self.kind == KIND_CONFIG


class BillNotReady(ApiError):
    """The trade bill of that day is still being generated (400 STATEMENT_CREATING): ask again later."""


class NoBill(ApiError):
    """WeChat has no trade bill for that day (400 NO_STATEMENT_EXIST): no payment or refund happened.

    Asked too early (before WeChat publishes the day's bills, about 10:00 Beijing time),
    a day with payments can answer this too; the caller decides by the date.
    """


class NoCertificates(ApiError):
    """WeChat issues this merchant no platform certificates (404 RESOURCE_NOT_EXISTS 证书不存在): public key only.

    Every merchant registered since late 2024 gets this answer; it means "verify by the WeChat
    Pay public key", not an outage.
    """


class BillIntegrityError(WeChatPayError):
    """A downloaded bill does not match the ``hash_value`` WeChat announced, or does not decompress."""


class TransportError(WeChatPayError):
    """The call did not get an answer (timeout, connection reset, DNS); safe to retry if idempotent."""

    retryable = True
