"""One JSON line per log record, tagged with the request id and scrubbed of anything secret."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import threading
from typing import Any, Iterable, TextIO

# Set by the web layer for the length of one request; billing code logs it without knowing HTTP.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("lbpay_request_id", default=None)

REDACTED = "[redacted]"
_PATTERNS = [
    # PEM blocks of any kind (private keys, certificates).
    re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.S),
    # Credentials in headers: Bearer tokens and WeChat Pay's Authorization parameters.
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r'(?i)(signature|nonce_str|token|secret|password|key)(["\']?\s*[=:]\s*["\']?)[^"\'\s,}]+'),
    # A license (base64 JSON | base64 signature) or any long base64 run: never a thing to log whole,
    # nor in pieces when a URL escapes its "/", "+", "=" or "|" (an access log line of a request path).
    re.compile(r"(?:[A-Za-z0-9+/_-]|%2[BbFf]){40,}(?:=|%3[Dd]){0,2}"
               r"((?:\||%7[Cc])(?:[A-Za-z0-9+/_-]|%2[BbFf]){40,}(?:=|%3[Dd]){0,2})?"),
]
# A signed document in a URL path: base64 of a JSON object ("{\"" encodes as eyJ) to the end of its run,
# with its "|signature" if any. Paths are otherwise ids and words, so only this shape is taken out.
_DOCUMENT_IN_PATH = re.compile(r"eyJ(?:[A-Za-z0-9+/=_-]|%2[BbFf]|%3[Dd])*(?:(?:\||%7[Cc])(?:[A-Za-z0-9+/=_-]|%2[BbFf]|%3[Dd])*)?")
_lock = threading.Lock()
_known_secrets: set[str] = set()
# The same, longest first, made when one is registered: a log line scrubs several fields, each
# against every secret, and sorting them again for each field cost more than the scrubbing.
_known_longest_first: list[tuple[str, ...]] = [()]  # one slot, replaced whole
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def register_secrets(secrets: Iterable[str | bytes | None]) -> None:
    """Register secret values that must be replaced wherever they would appear in a log line."""
    with _lock:
        for value in secrets:
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if value and len(value) >= 8:
                _known_secrets.add(value)
        _known_longest_first[0] = tuple(sorted(_known_secrets, key=len, reverse=True))


def redact_known(text: str) -> str:
    """Replace every registered secret in ``text``."""
    for value in _known_longest_first[0]:  # replaced whole when a secret is registered: no lock to read it
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact(text: str) -> str:
    """Replace every known secret and every secret-shaped string in ``text``."""
    text = redact_known(text)
    # Each pattern runs only where it could match: the word it cannot match without is there (case
    # folded, as re's IGNORECASE folds), or the text is long enough for a base64 run. Same result;
    # a log line's short fields (method, status, address, request id) skip the regexes altogether.
    folded = text.casefold()
    for pattern, words in zip(_PATTERNS, _NEEDED):
        if (any(word in folded for word in words) if words else len(text) >= _BASE64_RUN):
            text = pattern.sub(_keep_label, text)
    return text


# What each of _PATTERNS cannot match without; the last (base64 runs) needs _BASE64_RUN characters.
_NEEDED: list[tuple[str, ...]] = [("-----begin ",), ("bearer",),
                                  ("signature", "nonce_str", "token", "secret", "password", "key"), ()]
_BASE64_RUN = 40


def redact_path(path: str) -> str:
    """A URL path for the log: its ids stay readable; registered secrets and any signed document
    (a license key sent as ``/provider/licenses/<key>``) are replaced."""
    return _SEAT_PAGE_IN_PATH.sub("/seats/" + REDACTED, _DOCUMENT_IN_PATH.sub(REDACTED, redact_known(path)))


# A seat page's link (billing.seats) is a bearer credential in the path: its token never reaches a log.
_SEAT_PAGE_IN_PATH = re.compile(r"/seats/st_[^/?#\s]*")


# Fields whose values are ours and shaped like ids (a URL path holds order ids, and a license key
# only from an old client: keys and tokens belong in headers), so they keep ids but lose documents.
_ID_FIELDS = frozenset({"path"})


def _keep_label(match: re.Match[str]) -> str:
    # For "name=value" patterns keep the name so the line still says what was hidden.
    if match.re.groups >= 2 and match.group(2) is not None and match.re is _PATTERNS[2]:
        return match.group(1) + match.group(2) + REDACTED
    return REDACTED


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, request id and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            entry["request_id"] = rid
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry and not name.startswith("_"):
                if isinstance(value, (int, float, bool, type(None))):
                    entry[name] = value
                else:
                    entry[name] = redact_path(str(value)) if name in _ID_FIELDS else redact(str(value))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class NoQueryParameters(logging.Filter):
    """Drop peewee's debug lines: they carry every SQL parameter, bodies and licenses included."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("peewee") and record.levelno < logging.INFO)


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to whatever ``sys.stderr`` is at the moment of each record.

    A record is formatted before the handler's lock is taken: threads of a busy worker then queue
    on the lock only for the write itself, not for one another's JSON encoding and scrubbing.
    """

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - as logging's own handlers do: report, never raise
            self.handleError(record)
            return True
        with self.lock:  # type: ignore[union-attr]
            try:
                stream = self.stream
                stream.write(line)
                stream.flush()
            except Exception:  # noqa: BLE001
                self.handleError(record)
        return True

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: str = "INFO") -> logging.Handler:
    """Send every logger's records to stderr as JSON lines, once per process."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "lbpay_json", False):
            handler.setLevel(level)
            return handler
    # APScheduler says "Running job …" and "… executed successfully" at INFO for every tick of every
    # job; our own scheduler logs what a job did. Its warnings (a missed run) still come through.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    handler = _CurrentStderr()
    handler.lbpay_json = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter())
    handler.addFilter(NoQueryParameters())
    handler.setLevel(level)
    root.addHandler(handler)
    if root.level > logging.getLevelName(level) or root.level == logging.NOTSET:
        root.setLevel(level)
    return handler
