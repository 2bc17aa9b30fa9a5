"""The extension's course content provider: which files a course serves, to which license, and how often.

A course's files live in ``<content dir>/<course id>/``; those under its ``free/`` folder are served to
anyone, the rest only to a license that verifies, names that course, has not expired, and that the
server has not revoked (nor refunded). Paid files served are counted per license id, across every
key issued under it (a renewal is a new key, not new downloads), against the ``limits.maxDownloads``
the license was sold with.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peewee import fn

from licensing import verify_license
from models import Course, License, Order

from . import audit, limits
from .errors import BillingError
from .learners import current_licenses
from .orders import COURSE_ID
from database import write_transaction

from .shop import Shop, iso_utc

FREE = "free"
MAX_PATH_CHARS = 1024
MAX_QUERY_CHARS = 100
MAX_TREE_ENTRIES = 5000
MAX_TREE_DEPTH = 16
MAX_DOWNLOAD_LIMIT = 1_000_000
# Any control character, and the backslash that another OS reads as a separator.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")

# code → (HTTP status, message); the provider answers {"error": {"code", "message"}}.
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "The request is malformed."),
    "no_license": (401, "This file needs a license: send Authorization: Bearer <license key>."),
    "invalid_license": (401, "The license does not verify, or this server did not issue it."),
    "wrong_course": (403, "The license is for another course."),
    "license_expired": (403, "The license has expired; renew it to open paid content."),
    "license_revoked": (403, "The license was revoked."),
    "license_refunded": (403, "The purchase was refunded; the license no longer opens paid content."),
    "download_limit_reached": (403, "The license has used all the downloads it was sold with."),
    "rate_limited": (429, "Too many requests from this address; try again after Retry-After seconds."),
    "license_not_found": (404, "No license of this server matches this key."),
    "course_not_found": (404, "There is no such course."),
    "not_found": (404, "There is no such file in this course."),
}


class ContentError(Exception):
    """A refusal with a stable code, its HTTP status and a message for the learner."""

    def __init__(self, code: str, detail: str = "", extra: dict[str, Any] | None = None) -> None:
        self.status, message = ERRORS[code]
        super().__init__(f"{code}: {detail or message}")
        self.code = code
        self.message = f"{message} ({detail})" if detail else message
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        """The JSON answer: ``{"error": {"code", "message", ...}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


@dataclass(frozen=True)
class Grant:
    """A license that may open this course's paid files now: its row, and the limit it was sold with."""

    license_row: int
    license_id: str
    course_id: str
    max_downloads: int | None


# --- the course folder -------------------------------------------------------------------------

def course_folder(content_dir: Path, course_id: str) -> Path:
    """The resolved folder of a course we sell; ``course_not_found`` otherwise."""
    if not isinstance(course_id, str) or not COURSE_ID.match(course_id) or len(course_id) > 64:
        raise ContentError("course_not_found")
    if Course.get_or_none(Course.id == course_id) is None:
        raise ContentError("course_not_found")
    return (content_dir / course_id).resolve()


def resolve_file(content_dir: Path, course_id: str, relative: str) -> tuple[Path, bool]:
    """Return the real path of a course file and whether it is free; ``not_found`` for anything outside.

    No ``.``/``..``/empty segment, hidden name, control character or backslash is accepted, and the
    real path (symlinks followed) must stay inside the course folder, or its ``free/`` folder for a
    free file: a link out of ``free/`` into the paid files is not free.
    """
    folder = course_folder(content_dir, course_id)
    parts = relative.split("/") if isinstance(relative, str) else []
    if (not parts or len(relative) > MAX_PATH_CHARS or _UNSAFE.search(relative)
            or any(part in ("", ".", "..") or part.startswith(".") for part in parts)):
        raise ContentError("not_found")
    free = parts[0] == FREE
    target = folder.joinpath(*parts).resolve()
    boundary = folder / FREE if free else folder
    if not target.is_relative_to(boundary) or not target.is_file():
        raise ContentError("not_found")
    return target, free


def _entries(folder: Path, root: Path, depth: int, budget: list[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The visible folders and files under ``folder`` (hidden names and links leaving the course left out)."""
    folders: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    if depth > MAX_TREE_DEPTH:
        return folders, files
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or _UNSAFE.search(entry.name) or budget[0] <= 0:
            continue
        real = entry.resolve()
        relative = entry.relative_to(root).as_posix()
        free = relative.split("/")[0] == FREE
        if not real.is_relative_to(root / FREE if free else root):
            continue
        budget[0] -= 1
        if real.is_dir():
            sub_folders, sub_files = _entries(entry, root, depth + 1, budget)
            folders.append({"id": relative, "name": entry.name, "path": relative, "type": "folder",
                            "free": free, "folders": sub_folders, "files": sub_files})
        elif real.is_file():
            files.append({"id": relative, "name": entry.name, "path": relative, "type": "file",
                          "extension": entry.suffix.lstrip("."), "size": real.stat().st_size, "free": free})
    return folders, files


def course_structure(content_dir: Path, course_id: str) -> dict[str, Any]:
    """The tree of what a course serves, shaped as the extension's Course (exercises are the top folders)."""
    folder = course_folder(content_dir, course_id)
    course = Course.get_by_id(course_id)
    folders, files = _entries(folder, folder, 0, [MAX_TREE_ENTRIES]) if folder.is_dir() else ([], [])
    exercises = [{**f, "type": "exercise", "title": f["name"], "description": ""} for f in folders]
    return {"version": "1", "type": "course", "id": course.id, "title": course.title, "name": course.title,
            "description": course.title, "isFree": False, "exercises": exercises, "files": files}


# A walk of a large course takes a third of a second: each process keeps each course's tree a minute.
STRUCTURE_FRESH_FOR = dt.timedelta(minutes=1)
_WALKED: dict[tuple[str, str, tuple[int, int] | None], tuple[dt.datetime, dict[str, Any]]] = {}
_WALKED_LOCK = threading.Lock()
_WALKED_MAX = 512


def _identity(content_dir: Path, course_id: str) -> tuple[int, int] | None:
    """The course folder's device and inode (None when absent or not a course id): new after each upload."""
    if not isinstance(course_id, str) or not COURSE_ID.match(course_id) or len(course_id) > 64:
        return None
    try:
        found = (content_dir / course_id).stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def structure_for(shop: Shop, address: str | None, course_id: str) -> dict[str, Any]:
    """The course's tree for an anonymous client: limited per address, walked at most once a minute."""
    now = shop.now()
    try:
        limits.throttle("structure", address, limits.STRUCTURE_PER_CLIENT, now)
    except BillingError as exc:
        raise ContentError("rate_limited", extra={"retry_after": exc.retry_after}) from None
    # The folder's identity is in the key: an upload puts a new folder in place (billing.content_upload),
    # so every process walks the new tree at once; files edited in place show within the minute.
    key = (str(shop.config.content_dir), course_id, _identity(shop.config.content_dir, course_id))
    with _WALKED_LOCK:
        kept = _WALKED.get(key)
    if kept is not None and now - kept[0] < STRUCTURE_FRESH_FOR:
        return kept[1]
    tree = course_structure(shop.config.content_dir, course_id)  # course_not_found is never kept
    with _WALKED_LOCK:
        if len(_WALKED) >= _WALKED_MAX:
            _WALKED.clear()
        _WALKED[key] = (now, tree)
    return tree


def served_files(content_dir: Path, course_id: str) -> list[dict[str, Any]]:
    """Every file a course serves, flat: path, size, and whether it is free."""
    found: list[dict[str, Any]] = []

    def walk(folders: list[dict[str, Any]], files: list[dict[str, Any]]) -> None:
        found.extend({"path": f["path"], "size": f["size"], "free": f["free"]} for f in files)
        for sub in folders:
            walk(sub["folders"], sub["files"])

    tree = course_structure(content_dir, course_id)
    walk(tree["exercises"], tree["files"])
    return sorted(found, key=lambda f: f["path"])


# --- the catalogue -----------------------------------------------------------------------------

def _course_view(course: Course) -> dict[str, Any]:
    return {"id": course.id, "title": course.title, "name": course.title, "description": course.title,
            "type": "course", "isFree": False, "price_fen": course.price_fen, "currency": course.currency,
            "plan": course.plan, "period_days": course.period_days, "download_limit": course.download_limit}


def catalog(query: str | None = None) -> dict[str, Any]:
    """The courses for sale, optionally those whose id or title contains ``query`` (any case)."""
    if query is not None and (len(query) > MAX_QUERY_CHARS or _UNSAFE.search(query)):
        raise ContentError("bad_request", f"q is at most {MAX_QUERY_CHARS} printable characters")
    needle = (query or "").strip().casefold()
    courses = Course.select().where(Course.active == True).order_by(Course.id)  # noqa: E712
    return {"version": "1", "type": "catalog",
            "courses": [_course_view(c) for c in courses
                        if needle in c.id.casefold() or needle in c.title.casefold()]}


# --- licenses ----------------------------------------------------------------------------------

def _check_license(shop: Shop, text: str, course_id: str | None) -> tuple[License, dict[str, Any]]:
    """Verify a license and find its row; ContentError with the reason it may not open content."""
    now = shop.now()
    check = verify_license(text, shop.license_keys.public_keys(), now)
    payload = check.payload
    if check.status == "invalid" or payload is None or not isinstance(payload.get("orderId"), str):
        raise ContentError("invalid_license", check.reason if check.status == "invalid" else "")
    row = (License.select(License, Order).join(Order)
           .where(Order.public_id == payload["orderId"]).first())
    if row is None or row.key.strip() != text.strip():
        raise ContentError("invalid_license", "unknown license")
    if course_id is not None and row.course_id != course_id:
        raise ContentError("wrong_course", f"it is for {row.course_id}")
    current = current_licenses(License.select().where(License.license_id == row.license_id))
    if row.revoked_at is not None or (current and current[-1].revoked_at is not None):
        raise ContentError("license_revoked")
    # A refunded subscription period is taken back on the key itself (withdraw_period: revoked, or signed
    # again shorter under the refunded order's row), so what is left of such a key is still paid for.
    if row.order.status == "refunded" and row.plan != "subscription":
        raise ContentError("license_refunded")
    if check.status == "expired" or row.expires_at <= now:
        raise ContentError("license_expired", f"it expired at {iso_utc(row.expires_at)}")
    return row, payload


def downloads_of(license_id: str) -> int:
    """Paid files served under a license id, every key of it together."""
    total = (License.select(fn.COALESCE(fn.SUM(License.downloads), 0))
             .where(License.license_id == license_id).scalar())
    return int(total or 0)


def max_downloads_of(payload: dict[str, Any]) -> int | None:
    """The download limit a license was signed with, or None for no limit."""
    limits = payload.get("limits")
    value = limits.get("maxDownloads") if isinstance(limits, dict) else None
    return value if type(value) is int and value >= 0 else None


def grant_for(shop: Shop, text: str | None, course_id: str) -> Grant:
    """The grant a bearer license gives on ``course_id``'s paid files; ContentError says why not."""
    if not text:
        raise ContentError("no_license")
    row, payload = _check_license(shop, text, course_id)
    grant = Grant(license_row=row.id, license_id=row.license_id, course_id=row.course_id,
                  max_downloads=max_downloads_of(payload))
    if grant.max_downloads is not None:
        used = downloads_of(row.license_id)
        if used >= grant.max_downloads:
            raise ContentError("download_limit_reached", extra={"downloads": used,
                                                                "max_downloads": grant.max_downloads})
    return grant


def _signed_instant(payload: dict[str, Any], name: str) -> dt.datetime | None:
    """An instant the license itself carries (``createdAt``: a re-signed, shortened key has its own)."""
    try:
        return dt.datetime.fromisoformat(str(payload.get(name)).replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    except ValueError:
        return None


def license_report(shop: Shop, text: str, course_id: str | None) -> dict[str, Any]:
    """What ``/provider/licenses/<key>`` says of a license for a course; ``license_not_found`` if not ours."""
    try:
        row, payload = _check_license(shop, text, course_id)
    except ContentError as exc:
        if exc.code == "invalid_license":
            raise ContentError("license_not_found") from None
        raise
    limit = max_downloads_of(payload)
    created, expires = iso_utc(_signed_instant(payload, "createdAt") or row.issued_at), iso_utc(row.expires_at)
    permissions = payload.get("contentPermissions")
    if not (isinstance(permissions, list) and all(isinstance(p, str) for p in permissions)):
        permissions = ["all_chapters"]
    # Ours in camelCase; the extension's addLicense reads the same facts as created_at, expires_at and
    # content_permissions, so both spellings are answered (one fact, two names).
    return {"valid": True, "state": "active", "id": row.license_id, "courseId": row.course_id,
            "createdAt": created, "expiresAt": expires, "plan": row.plan, "downloads": downloads_of(row.license_id),
            "maxDownloads": limit, "contentPermissions": permissions,
            "created_at": created, "expires_at": expires, "content_permissions": permissions}


def count_download(shop: Shop, grant: Grant) -> None:
    """Count one paid file served to the license; ``download_limit_reached`` if another request took the last."""
    now = shop.now()
    with write_transaction():  # writers queue: no other request counts between the sum and the update
        if grant.max_downloads is not None and downloads_of(grant.license_id) >= grant.max_downloads:
            raise ContentError("download_limit_reached", extra={"max_downloads": grant.max_downloads})
        License.update(downloads=License.downloads + 1).where(License.id == grant.license_row).execute()
        row = License.get_by_id(grant.license_row)
        if grant.max_downloads is not None and downloads_of(grant.license_id) == grant.max_downloads:
            audit.record("license.downloads_used_up", at=now, actor="learner", order=row.order,
                         detail={"license": grant.license_id, "max_downloads": grant.max_downloads})


def set_download_limit(shop: Shop, course_id: str, limit: int | None, *, actor: str) -> Course:
    """Set (or lift, with None) the downloads per license that a course's new licenses carry."""
    if limit is not None and (type(limit) is not int or not 1 <= limit <= MAX_DOWNLOAD_LIMIT):
        raise ContentError("bad_request", f"the download limit is a whole number from 1 to {MAX_DOWNLOAD_LIMIT}")
    now = shop.now()
    with write_transaction():
        course = Course.get_or_none(Course.id == course_id)
        if course is None:
            raise ContentError("course_not_found")
        if course.download_limit != limit:
            Course.update(download_limit=limit).where(Course.id == course_id).execute()
            audit.record("course.download_limit", at=now, actor=actor,
                         detail={"course": course_id, "before": course.download_limit, "after": limit})
    return Course.get_by_id(course_id)


def started_download(status: int, method: str) -> bool:
    """Whether an answer hands over file content, and so counts: a 200 or 206 to a GET (not HEAD, not 304)."""
    return method == "GET" and status in (200, 206)

