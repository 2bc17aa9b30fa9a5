"""Notification delivery: a lazily started scheduler thread that POSTs signed notifications and re-sends."""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from wechatpay.crypto import make_nonce, response_message

from .config import RETRY_DELAYS
from .signing import probe_signature

if TYPE_CHECKING:
    from .state import SandboxState

log = logging.getLogger(__name__)

ACCEPTED = (200, 204)
USER_AGENT = "Mozilla/4.0"


@dataclass
class Notification:
    """One notification: its envelope is encrypted once; every send signs it afresh."""

    id: str
    event_type: str
    subject: str  # out_trade_no or out_refund_no
    declared_url: str
    url: str
    envelope: dict[str, Any]
    body: bytes
    plaintext: bytes
    attempts: int = 0
    delivered: bool = False
    abandoned: bool = False

    def tampered_body(self) -> bytes:
        """The envelope with one ciphertext byte changed (still a valid base64 string)."""
        resource = dict(self.envelope["resource"])
        raw = bytearray(base64.b64decode(resource["ciphertext"]))
        raw[0] ^= 0x01
        resource["ciphertext"] = base64.b64encode(bytes(raw)).decode("ascii")
        envelope = {**self.envelope, "resource": resource}
        return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Courier:
    """Runs timed work (deliveries, refund settlement) on one daemon thread started on first need."""

    def __init__(self, state: SandboxState) -> None:
        self._state = state
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._senders: set[threading.Thread] = set()
        self._stopping = False

    @property
    def running(self) -> bool:
        """Whether the courier thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # --- scheduling ---------------------------------------------------------------------------

    def call_later(self, delay: float, work: Callable[[], object]) -> None:
        """Run ``work`` on the courier thread after ``delay`` seconds."""
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), work))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wechatpay-sandbox-courier", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._queue and self._queue[0][0] <= time.monotonic():
                        break
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, work = heapq.heappop(self._queue)
            try:
                work()
            except Exception:  # the courier must outlive one bad job
                log.exception("sandbox courier job failed")

    def _spawn(self, target: Callable[[], object]) -> None:
        def run() -> None:
            try:
                target()
            except Exception:
                log.exception("sandbox delivery failed")
            finally:
                with self._cond:
                    self._senders.discard(threading.current_thread())

        thread = threading.Thread(target=run, name="wechatpay-sandbox-send", daemon=True)
        with self._cond:
            if self._stopping:
                return
            self._senders.add(thread)
        thread.start()

    def stop(self) -> None:
        """Drop pending work, stop the thread and wait for sends in flight."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
            thread, senders = self._thread, list(self._senders)
        if thread is not None:
            thread.join(timeout=5)
        deadline = time.monotonic() + self._state.config.notify_timeout + 1
        for sender in senders:
            sender.join(timeout=max(0.0, deadline - time.monotonic()))

    # --- delivery -----------------------------------------------------------------------------

    def dispatch(self, notification: Notification) -> None:
        """Start delivering a new notification, subject to the armed notify faults."""
        with self._state.lock:
            mode, delay = self._state.faults.notify_mode, self._state.faults.notify_delay
        if mode == "drop":
            self._state.record_delivery(self._entry(notification, 0, 1, "dropped", None, "dropped by fault injection"))
            return
        self.call_later(delay, lambda: self._spawn(lambda: self._attempt(notification)))

    def replay(self, notification: Notification) -> None:
        """Send a notification once more now, outside its retry schedule."""
        self._spawn(lambda: self._send(notification, 0, 1))

    def _attempt(self, notification: Notification) -> None:
        with self._state.lock:
            if notification.delivered or self._state.stopping.is_set():
                return
            notification.attempts += 1
            attempt = notification.attempts
            faults = self._state.faults
            copies = faults.notify_copies if faults.notify_mode == "duplicate" else 1
        if copies == 1:
            accepted = self._send(notification, attempt, 1)
        else:
            results: list[bool] = []
            threads = [
                threading.Thread(target=lambda c=c: results.append(self._send(notification, attempt, c)), daemon=True)
                for c in range(1, copies + 1)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            accepted = any(results)
        with self._state.lock:
            if accepted:
                notification.delivered = True
                return
            if attempt > len(RETRY_DELAYS):
                notification.abandoned = True
                return
        delay = RETRY_DELAYS[attempt - 1] * self._state.config.retry_scale
        self.call_later(delay, lambda: self._spawn(lambda: self._attempt(notification)))

    def _send(self, notification: Notification, attempt: int, copy: int) -> bool:
        """POST one signed copy; return whether the merchant accepted it (HTTP 200 or 204)."""
        state = self._state
        with state.lock:
            kind = state.faults.take_delivery()
        body = notification.tampered_body() if kind == "tamper-ciphertext" else notification.body
        stamp = str(int(state.now()))
        nonce = make_nonce(32)
        serial = state.notification_serial()
        if kind == "probe":
            signature = probe_signature()
        elif kind == "tamper-signature":
            signature = state.identity.sign(response_message(stamp, nonce, body + b" "), serial)
        else:
            signature = state.identity.sign(response_message(stamp, nonce, body), serial)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Wechatpay-Timestamp": stamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        }
        status: int | None = None
        error: str | None = None
        try:
            response = requests.post(
                notification.url, data=body, headers=headers,
                timeout=state.config.notify_timeout, allow_redirects=False,
            )
            status = response.status_code
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        accepted = status in ACCEPTED
        entry = self._entry(notification, attempt, copy, kind, status, error)
        entry["serial"] = serial
        # A merchant that answers 2xx to a forged notification has a verification bug worth flagging.
        entry["accepted_forgery"] = accepted and kind != "normal"
        state.record_delivery(entry)
        return accepted

    def _entry(
        self, notification: Notification, attempt: int, copy: int, kind: str, status: int | None, error: str | None
    ) -> dict[str, Any]:
        return {
            "notification_id": notification.id,
            "event_type": notification.event_type,
            "subject": notification.subject,
            "url": notification.url,
            "attempt": attempt,
            "copy": copy,
            "kind": kind,
            "status": status,
            "error": error,
            "ok": status in ACCEPTED,
            "time": self._state.now(),
        }
