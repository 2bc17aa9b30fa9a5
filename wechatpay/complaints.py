"""Consumer complaints (消费者投诉2.0): the notification URL, complaints, their history, replies and completion.

Every call goes through the client's one choke point (``WeChatPayClient._call``): signed like the
payment calls, answers verified. A reply is not idempotent at WeChat (two calls post two messages),
so it is sent once and never retried by the transport.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from .client import WeChatPayClient, _segment
from .errors import ApiError, DecryptError, MalformedError

NOTIFICATIONS_PATH = "/v3/merchant-service/complaint-notifications"
COMPLAINTS_PATH = "/v3/merchant-service/complaints-v2"
# The list answers at most 50 a page and a span of at most 30 days; the history 300 a page.
PAGE_LIMIT = 50
HISTORY_LIMIT = 300
MAX_SPAN_DAYS = 30
# response_content is string(200) on the direct merchant's page (characters, not bytes); four images at most.
REPLY_CHARS = 200
REPLY_IMAGES = 4
REFUND_ACTIONS = ("APPROVE", "REJECT")
EVENT_TYPES = ("COMPLAINT.CREATE", "COMPLAINT.STATE_CHANGE")
STATES = ("PENDING", "PROCESSING", "PROCESSED")
IMAGES_PATH = "/v3/merchant-service/images"
# The upload takes JPG, BMP or PNG up to 2 MB; the name must end in one of those.
IMAGE_TYPES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png", b"BM": ".bmp"}
IMAGE_BYTES = 2 * 1024 * 1024


def image_kind(data: bytes) -> str | None:
    """The file extension WeChat accepts for these image bytes (by their magic number), or None."""
    return next((ext for magic, ext in IMAGE_TYPES.items() if data.startswith(magic)), None)


def _multipart(meta: bytes, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    """The upload's form: ``meta`` (the JSON that is signed) and ``file``."""
    boundary = "lbpay" + secrets.token_hex(16)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"meta\"\r\n"
            f"Content-Type: application/json\r\n\r\n").encode()
    part = (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode()
    return head + meta + part + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True)
class ComplaintPage:
    """One page of the complaint list: the complaints as WeChat gave them, and the total (on the first page)."""

    complaints: list[dict[str, Any]]
    total: int | None


def _text(name: str, value: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters; WeChat Pay takes at most {limit}")
    return value


def _day(value: dt.date) -> str:
    return value.isoformat()


class ComplaintsClient:
    """The complaint calls of one merchant, made through its ``WeChatPayClient``."""

    def __init__(self, client: WeChatPayClient) -> None:
        self._client = client

    @property
    def mchid(self) -> str:
        return self._client.mchid

    # --- the notification URL -------------------------------------------------------------------

    def notification_url(self) -> str | None:
        """Return the registered complaint notification URL, or None when none is registered."""
        try:
            answer = self._client._call("GET", NOTIFICATIONS_PATH).json_object()
        except ApiError as exc:
            if exc.status == 404 or exc.code in ("RESOURCE_NOT_EXISTS", "NOT_FOUND"):
                return None
            raise
        url = answer.get("url")
        return url if isinstance(url, str) and url else None

    def create_notification_url(self, url: str) -> dict[str, Any]:
        """Register the URL WeChat Pay sends complaint notifications to (https, no query)."""
        return self._client._call("POST", NOTIFICATIONS_PATH, body={"url": url}).json_object()

    def update_notification_url(self, url: str) -> dict[str, Any]:
        """Replace the registered complaint notification URL."""
        return self._client._call("PUT", NOTIFICATIONS_PATH, body={"url": url}).json_object()

    def delete_notification_url(self) -> None:
        """Stop complaint notifications (WeChat answers 204)."""
        self._client._call("DELETE", NOTIFICATIONS_PATH)

    # --- reading --------------------------------------------------------------------------------

    def list_complaints(self, begin: dt.date, end: dt.date, *, offset: int = 0,
                        limit: int = PAGE_LIMIT) -> ComplaintPage:
        """Return one page of the complaints made between two dates (inclusive, at most 30 days apart)."""
        if end < begin or (end - begin).days >= MAX_SPAN_DAYS:
            raise ValueError("begin_date..end_date must span 1 to 30 days")
        if not 1 <= limit <= PAGE_LIMIT or offset < 0:
            raise ValueError("limit is 1..50 and offset not negative")
        query = {"limit": str(limit), "offset": str(offset), "begin_date": _day(begin), "end_date": _day(end)}
        answer = self._client._call("GET", COMPLAINTS_PATH, query=query).json_object()
        data = answer.get("data", [])
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise MalformedError("complaint list answer has no data list")
        total = answer.get("total_count")
        return ComplaintPage(data, total if isinstance(total, int) and not isinstance(total, bool) else None)

    def complaint(self, complaint_id: str) -> dict[str, Any]:
        """Return one complaint's detail (its payer_phone still encrypted)."""
        answer = self._client._call("GET", f"{COMPLAINTS_PATH}/{_segment(complaint_id)}").json_object()
        if answer.get("complaint_id") != complaint_id:
            raise MalformedError("complaint detail answer names another complaint")
        return answer

    def negotiation_history(self, complaint_id: str) -> list[dict[str, Any]]:
        """Return the whole negotiation history of one complaint, oldest first, page by page."""
        path = f"{COMPLAINTS_PATH}/{_segment(complaint_id)}/negotiation-historys"
        entries: list[dict[str, Any]] = []
        while True:
            query = {"limit": str(HISTORY_LIMIT), "offset": str(len(entries))}
            answer = self._client._call("GET", path, query=query).json_object()
            data = answer.get("data", [])
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise MalformedError("negotiation history answer has no data list")
            entries.extend(data)
            total = answer.get("total_count")
            if len(data) < HISTORY_LIMIT or (isinstance(total, int) and len(entries) >= total):
                return entries

    # --- acting ---------------------------------------------------------------------------------

    def respond(self, complaint_id: str, content: str, *, images: tuple[str, ...] = ()) -> None:
        """Post a reply to the payer (the first one moves the complaint from PENDING to PROCESSING).

        Sent once: a reply is a message, and a retried one would reach the payer twice.
        """
        body: dict[str, Any] = {"complainted_mchid": self.mchid,
                                "response_content": _text("response_content", content, REPLY_CHARS)}
        if images:
            if len(images) > REPLY_IMAGES:
                raise ValueError(f"at most {REPLY_IMAGES} images")
            body["response_images"] = list(images)
        self._client._call("POST", f"{COMPLAINTS_PATH}/{_segment(complaint_id)}/response", body=body, attempts=1)

    def complete(self, complaint_id: str) -> None:
        """Tell WeChat the complaint is handled (PROCESSED); the payer is then asked how satisfied they are."""
        self._client._call("POST", f"{COMPLAINTS_PATH}/{_segment(complaint_id)}/complete",
                           body={"complainted_mchid": self.mchid})

    def update_refund_progress(self, complaint_id: str, action: str, *, launch_refund_day: int | None = None,
                               reject_reason: str | None = None, remark: str | None = None) -> None:
        """Answer a refund request: APPROVE (with the working days until the refund) or REJECT (with a reason)."""
        if action not in REFUND_ACTIONS:
            raise ValueError("action is APPROVE or REJECT")
        body: dict[str, Any] = {"action": action}
        if action == "APPROVE":
            if launch_refund_day is None or not 0 <= launch_refund_day <= 30:
                raise ValueError("an approval says in how many working days (0..30) the refund starts")
            body["launch_refund_day"] = launch_refund_day
        else:
            body["reject_reason"] = _text("reject_reason", reject_reason or "", 200)
        if remark:
            body["remark"] = _text("remark", remark, 200)
        self._client._call("POST", f"{COMPLAINTS_PATH}/{_segment(complaint_id)}/update-refund-progress", body=body)

    # --- images ---------------------------------------------------------------------------------

    def upload_image(self, data: bytes) -> str:
        """Upload a JPG, PNG or BMP (at most 2 MB) for a reply; return its media_id."""
        ext = image_kind(data)
        if ext is None or len(data) > IMAGE_BYTES:
            raise ValueError("an image is a JPG, PNG or BMP of at most 2 MB")
        meta = {"filename": "reply" + ext, "sha256": hashlib.sha256(data).hexdigest()}
        signed = json.dumps(meta, separators=(",", ":")).encode()
        content_type = {".jpg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp"}[ext]
        answer = self._client._call("POST", f"{IMAGES_PATH}/upload", body=meta,
                                    wire=_multipart(signed, meta["filename"], data, content_type)).json_object()
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise MalformedError("image upload answer has no media_id")
        return media_id

    def download_image(self, media_url: str) -> bytes:
        """Download an image a complaint names (its media_url), only from a WeChat Pay host we call.

        The answer is the image itself, which WeChat does not sign (like a bill file): the request
        is signed, and an answer that is not an image is refused.
        """
        data = self._client._call("GET", self._client._relative(media_url), verify=False).body
        if image_kind(data) is None:
            raise MalformedError("the media_url did not answer with an image")
        return data

    # --- the payer's phone number ---------------------------------------------------------------

    def decrypt_phone(self, ciphertext: str) -> str:
        """Decrypt ``payer_phone``: RSA-OAEP (SHA-1) with the merchant's API private key, as WeChat encrypts it."""
        try:
            raw = base64.b64decode(ciphertext, validate=True)
            plain = self._client._merchant_key.decrypt(
                raw, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
            return plain.decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise DecryptError("payer_phone does not decrypt with the merchant key") from exc
