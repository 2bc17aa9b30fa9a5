"""Courses and their prices."""

from __future__ import annotations

from typing import Any

from models import Course

from . import audit
from .addresses import has_control_characters
from .errors import BillingError
from .orders import COURSE_ID
from .shop import Shop
from database import write_transaction

PLANS = ("one_time", "subscription")


def save_course(shop: Shop, *, course_id: str, title: str, price_fen: Any, plan: str = "one_time",
                period_days: Any = None, active: bool = True, actor: str = "system",
                ip: str | None = None) -> Course:
    """Create or update a course after checking every field; money is whole fen only."""
    if not COURSE_ID.match(course_id) or len(course_id) > 64:
        raise BillingError("bad_request", "course id must be a kebab-case slug like cpp-primer-5th")
    title = title.strip()
    if not 1 <= len(title) <= 127:
        raise BillingError("bad_request", "title must be 1 to 127 characters")
    if has_control_characters(title):
        # A line break in a title became a line break in every purchase mail's Subject header.
        raise BillingError("bad_request", "title must be one line without control characters")
    if type(price_fen) is not int or not 1 <= price_fen <= 100_000_000:
        raise BillingError("bad_request", "price must be a whole number of fen from 1 to 100000000")
    if plan not in PLANS:
        raise BillingError("bad_request", "plan must be one_time or subscription")
    if period_days is not None and (type(period_days) is not int or not 1 <= period_days <= 36500):
        raise BillingError("bad_request", "period must be 1 to 36500 days")
    if plan == "subscription" and period_days is None:
        raise BillingError("bad_request", "a subscription needs a period in days")
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
