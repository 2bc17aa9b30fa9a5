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


class ApiError(WeChatPayError):
    """WeChat Pay answered a call with an error status and body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: object = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.retryable = retryable


class TransportError(WeChatPayError):
    """The call did not get an answer (timeout, connection reset, DNS); safe to retry if idempotent."""

    retryable = True
