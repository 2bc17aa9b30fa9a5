"""Courses and their prices."""

from __future__ import annotations

from typing import Any

from models import Course, CourseDetails

from . import audit
from .addresses import has_control_characters
from .errors import BillingError
from .orders import COURSE_ID
from .shop import Shop
from database import write_transaction

PLANS = ("one_time", "subscription")


# Each plan in words, Chinese then English: what the console and the buy page say instead of the code.
PLAN_WORDS = {"one_time": ("一次购买，永久使用", "One-time purchase, yours for good"),
              "subscription": ("订阅（按期付费，不会自动续费）", "Subscription (pay per period; does not renew by itself)")}
DESCRIPTION_MAX = 2000
COVER_MAX = 512 * 1024
# The image types a cover may be, by the bytes they start with (what a browser was told is not trusted).
COVER_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))

# Each field mistake in words, Chinese then English, for the editor to show next to its field.
FIELD_WORDS = {
    "id": ("id 只能用小写字母、数字和 -，例如 cpp-primer-5th。", "The id is lower-case letters, digits and -, like cpp-primer-5th."),
    "title_length": ("名称需要 1 到 127 个字。", "The title is 1 to 127 characters."),
    "title_line": ("名称只能是一行文字。", "The title must be one line of text."),
    "price": ("价格是 0.01 到 1000000.00 元，最多两位小数，例如 99 或 99.00。",
              "The price is ¥0.01 to ¥1,000,000.00 with at most two decimals, like 99 or 99.00."),
    "plan": ("请选择一次购买或订阅。", "Choose a one-time purchase or a subscription."),
    "period_range": ("有效期是 1 到 36500 天的整数。", "The period is a whole number of days from 1 to 36500."),
    "period_needed": ("订阅需要填写有效期（天）。", "A subscription needs its period in days."),
    "description": (f"介绍最多 {DESCRIPTION_MAX} 个字。", f"The description is at most {DESCRIPTION_MAX} characters."),
    "cover": ("封面必须是不超过 512 KB 的 PNG 或 JPEG 图片。", "The cover must be a PNG or JPEG image of at most 512 KB."),
    "download_limit": ("下载次数上限是 1 到 1000000 的整数，留空为不限。",
                       "The download limit is a whole number from 1 to 1,000,000, or empty for none."),
}


class CourseInvalid(BillingError):
    """Mistakes in the course form, by field: {field: key of FIELD_WORDS}."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("bad_request", "; ".join(FIELD_WORDS[key][1] for key in fields.values()))
        self.fields = fields


def check_course(*, course_id: str, title: str, price_fen: Any, plan: str, period_days: Any) -> dict[str, str]:
    """Every mistake in a course's fields at once: {field: key of FIELD_WORDS} (empty when all is well)."""
    wrong: dict[str, str] = {}
    if not COURSE_ID.match(course_id) or len(course_id) > 64:
        wrong["id"] = "id"
    title = title.strip()
    if not 1 <= len(title) <= 127:
        wrong["title"] = "title_length"
    elif has_control_characters(title):
        # A line break in a title became a line break in every purchase mail's Subject header.
        wrong["title"] = "title_line"
    if type(price_fen) is not int or not 1 <= price_fen <= 100_000_000:
        wrong["price"] = "price"
    if plan not in PLANS:
        wrong["plan"] = "plan"
    if period_days is not None and (type(period_days) is not int or not 1 <= period_days <= 36500):
        wrong["period_days"] = "period_range"
    elif plan == "subscription" and period_days is None:
        wrong["period_days"] = "period_needed"
    return wrong


def save_course(shop: Shop, *, course_id: str, title: str, price_fen: Any, plan: str = "one_time",
                period_days: Any = None, active: bool = True, actor: str = "system",
                ip: str | None = None) -> Course:
    """Create or update a course after checking every field; money is whole fen only."""
    wrong = check_course(course_id=course_id, title=title, price_fen=price_fen, plan=plan, period_days=period_days)
    if wrong:
        raise CourseInvalid(wrong)
    title = title.strip()
    now = shop.now()
    with write_transaction():
        course = Course.get_or_none(Course.id == course_id)
        before = None if course is None else {
            "title": course.title, "price_fen": course.price_fen, "plan": course.plan,
            "period_days": course.period_days, "active": course.active}
        after = {"title": title, "price_fen": price_fen, "plan": plan, "period_days": period_days,
                 "active": active}
        if course is None:
            course = Course.create(id=course_id, created_at=now, **after)
        else:
            Course.update(**after).where(Course.id == course_id).execute()
            course = Course.get_by_id(course_id)
        audit.record("course.saved", at=now, actor=actor, ip=ip,
                     detail={"course": course_id, "before": before, "after": after})
    return course


def courses_for_sale() -> list[Course]:
    """Every course that can be bought now, by id."""
    return list(Course.select().where(Course.active == True).order_by(Course.id))  # noqa: E712


def course_for_sale(course_id: str) -> Course | None:
    """The course with this id if it can be bought now."""
    return Course.get_or_none((Course.id == course_id) & (Course.active == True))  # noqa: E712


def all_courses() -> list[Course]:
    """Every course, sold or not, by id (the creator's view)."""
    return list(Course.select().order_by(Course.id))


def course_by_id(course_id: str) -> Course | None:
    """The course with this id, sold or not."""
    return Course.get_or_none(Course.id == course_id)


def cover_type(data: bytes) -> str | None:
    """The image type of a cover's bytes, or None when it is not one we serve."""
    return next((kind for magic, kind in COVER_TYPES if data.startswith(magic)), None)


def check_details(description: str, cover: bytes | None) -> dict[str, str]:
    wrong: dict[str, str] = {}
    if len(description) > DESCRIPTION_MAX:
        wrong["description"] = "description"
    if cover is not None and (len(cover) > COVER_MAX or cover_type(cover) is None):
        wrong["cover"] = "cover"
    return wrong


def save_details(shop: Shop, course_id: str, *, description: str, cover: bytes | None, drop_cover: bool = False,
                 actor: str, ip: str | None = None) -> CourseDetails:
    """Keep a course's description and cover (the cover only when a new one is given, or dropped), with its event."""
    text = description.replace("\r\n", "\n").strip()
    wrong = check_details(text, cover)
    if wrong:
        raise CourseInvalid(wrong)
    now = shop.now()
    with write_transaction():
        if Course.get_or_none(Course.id == course_id) is None:
            raise BillingError("course_not_found")
        row = CourseDetails.get_or_none(CourseDetails.course == course_id)
        if row is None:
            row = CourseDetails(course=course_id, description="", updated_at=now)
            created = True
        else:
            created = False
        changed = {"description": text != row.description, "cover": cover is not None or (drop_cover and bool(row.cover))}
        row.description, row.updated_at = text, now
        if cover is not None:
            row.cover, row.cover_type = cover, cover_type(cover)
        elif drop_cover:
            row.cover, row.cover_type = None, None
        row.save(force_insert=created)
        if any(changed.values()):
            audit.record("course.details_saved", at=now, actor=actor, ip=ip,
                         detail={"course": course_id, **{k: v for k, v in changed.items() if v},
                                 "cover_bytes": len(cover) if cover is not None else None})
    return row


def details_of(course_id: str) -> CourseDetails | None:
    return CourseDetails.get_or_none(CourseDetails.course == course_id)


def cover_of(course_id: str) -> tuple[bytes, str] | None:
    row = CourseDetails.get_or_none(CourseDetails.course == course_id)
    if row is None or not row.cover:
        return None
    return bytes(row.cover), row.cover_type or "application/octet-stream"
