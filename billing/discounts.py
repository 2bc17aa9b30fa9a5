"""Discount codes and launch prices: what one buyer pays for one course, and taking a code's use.

Rules (the creator's words are in README "Discount codes and launch prices"):

- A code takes a percent (1..100) or a number of fen off the course's list price; it is for one
  course or every course, valid from/to (either end open), for at most N uses, optionally once per
  buyer (per buyer token and per e-mail address). A paused code is refused like an expired one.
- A launch price is a price for one course, for a time window and/or for the first N buyers; no code.
- One discount per order: the buyer pays the lowest of the list price, the launch price and the
  code's price (a code that would not make it cheaper than the launch price is not used up).
- A price is 0 only when the discount covers everything (a 100 % code, or a fixed code at least the
  list price): that order is free, fulfilled at once and never sent to WeChat. Any other price is at
  least 1 fen: a percent discount rounds down, so it never takes the last fen.
- A use is an order carrying the discount that is fulfilled (or refunded later), or still pending and
  unexpired. An order that expires or is cancelled unpaid therefore gives its use back at once, with
  no job and no counter to keep right; a refunded order keeps its use.
- The use is taken inside the order's own write transaction (``take``), which holds the database's
  write lock: the count and the new order cannot interleave with another buyer's, so the last use
  goes to exactly one buyer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from peewee import fn

from database import write_transaction
from models import Buyer, Course, DiscountCode, Order
from wechatpay.errors import WeChatPayError

from . import audit, limits, rows
from .errors import BillingError
from .mail import enqueue_license_mail
from .payments import issue_license_for
from .shop import Shop, hash_token

if TYPE_CHECKING:
    from .orders import PlacedOrder

log = logging.getLogger(__name__)
FREE_PREFIX = "FREE"  # out_trade_no of an order a discount made free: never sent to WeChat Pay

CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{2,31}$")
# Wrong codes from one client address: beyond this, guessing codes is refused for a while (429).
CODE_MISSES_PER_CLIENT = limits.Rule(10, 600)
KINDS = ("percent", "fixed", "launch")


@dataclass(frozen=True)
class Price:
    """What one buyer pays for one course now, and why."""

    list_fen: int
    paid_fen: int
    discount: DiscountCode | None = None

    @property
    def discount_fen(self) -> int:
        return self.list_fen - self.paid_fen

    @property
    def free(self) -> bool:
        return self.paid_fen == 0


def normalise_code(text: Any) -> str:
    """A code as typed (any case, spaces around) in its stored form, or ``code_not_found``."""
    if not isinstance(text, str):
        raise BillingError("bad_request", "code must be a string")
    code = text.strip().upper()
    if not CODE.match(code):
        raise BillingError("code_not_found", "a code is 3 to 32 letters, digits, - or _")
    return code


def price_after(discount: DiscountCode, list_fen: int) -> int:
    """The price a discount gives on a list price: 0 only when it covers all of it."""
    if discount.kind == "launch":
        return min(discount.value, list_fen)
    if discount.kind == "percent":
        return list_fen - list_fen * discount.value // 100
    return max(0, list_fen - discount.value)


def uses(discount_id: int, now: dt.datetime) -> Any:
    """The orders that hold one of the discount's uses now (see the module's rules)."""
    return Order.select(Order.id).where(
        (Order.discount == discount_id)
        & ((Order.status.not_in(("pending", "closed")))
           | ((Order.status == "pending") & (Order.expires_at > now))))


def _refusal(discount: DiscountCode, course: Course, now: dt.datetime) -> str | None:
    """Why this discount cannot be used for this course now, or None."""
    if discount.course_id is not None and discount.course_id != course.id:
        return "code_wrong_course"
    if discount.paused_at is not None or (discount.ends_at is not None and discount.ends_at <= now):
        return "code_expired"
    if discount.starts_at is not None and discount.starts_at > now:
        return "code_not_started"
    if discount.max_uses is not None and uses(discount.id, now).count() >= discount.max_uses:
        return "code_exhausted"
    return None


def _used_by(discount: DiscountCode, buyer: Buyer | None, email: str | None, now: dt.datetime) -> bool:
    whose = []
    if buyer is not None:
        whose.append(Order.buyer == buyer.id)
    if email:
        whose.append(fn.LOWER(Order.email) == email.lower())
    if not whose:
        return False
    condition = whose[0] if len(whose) == 1 else (whose[0] | whose[1])
    return uses(discount.id, now).where(condition).exists()


def launch_price(course: Course, now: dt.datetime) -> DiscountCode | None:
    """The lowest launch price of a course that holds now, if any."""
    best = None
    for launch in rows.find(DiscountCode, {"kind": "launch", "course": course.id, "paused_at": None}):
        if _refusal(launch, course, now) is None and (best is None or launch.value < best.value):
            best = launch
    return best


def price_for(course: Course, code: Any, buyer: Buyer | None, email: str | None, now: dt.datetime) -> Price:
    """What this buyer pays for this course now, with ``code`` if they gave one; a refused code raises."""
    list_fen = course.price_fen
    best = Price(list_fen, list_fen)
    launch = launch_price(course, now)
    if launch is not None:
        best = Price(list_fen, price_after(launch, list_fen), launch)
    if code is None:
        return best
    found = DiscountCode.get_or_none((DiscountCode.code == normalise_code(code)) & (DiscountCode.kind != "launch"))
    if found is None:
        raise BillingError("code_not_found")
    refusal = _refusal(found, course, now)
    if refusal is not None:
        raise BillingError(refusal, found.code or "")
    if found.once_per_buyer:
        if buyer is None and not email:
            raise BillingError("bad_request", "this code is one per buyer: give an e-mail address or a buyer token")
        if _used_by(found, buyer, email, now):
            raise BillingError("code_already_used", found.code or "")
    with_code = Price(list_fen, price_after(found, list_fen), found)
    return with_code if with_code.paid_fen < best.paid_fen else best


class DiscountGone(BillingError):
    """The discount's last use (or the buyer's one use) went elsewhere between pricing and writing."""


def take(price: Price, buyer: Buyer | None, email: str | None, now: dt.datetime) -> None:
    """Check again, inside the order's write transaction, that the discount still has a use for this buyer.

    Call it in the same ``write_transaction`` that creates the order, before the order is written:
    the database's write lock makes count-then-insert one step, so of many buyers racing for the
    last use exactly one gets it; the others get ``code_exhausted`` (a launch price: ``price_changed``).
    """
    discount = price.discount
    if discount is None:
        return
    fresh = DiscountCode.get_by_id(discount.id)
    refusal = _refusal(fresh, Course(id=fresh.course_id or ""), now)  # the course was checked when priced
    if refusal is None and fresh.once_per_buyer and _used_by(fresh, buyer, email, now):
        refusal = "code_already_used"
    if refusal is not None:
        raise DiscountGone("price_changed" if fresh.kind == "launch" else refusal, fresh.code or "")


@contextlib.contextmanager
def give_back_on_loss(shop: Shop, out_trade_no: str, ip: str | None) -> Iterator[None]:
    """Around an order's write transaction: if the discount was lost there, close the WeChat order just made.

    Nothing of the order was written (the transaction rolled back); its WeChat order was never
    shown, so it is closed at once rather than left to expire; the refusal is audited.
    """
    try:
        yield
    except DiscountGone as gone:
        try:
            shop.wechat.close_order(out_trade_no)
        except WeChatPayError as exc:
            log.warning("could not close %s after its discount was lost: %s", out_trade_no, exc)
        with write_transaction():
            audit.record("order.discount_refused", at=shop.now(), actor="buyer", ip=ip,
                         detail={"out_trade_no": out_trade_no, "error": gone.code, "code": gone.detail})
        raise


def audit_fields(price: Price) -> dict[str, Any]:
    """What an order's audit event says about its discount (nothing when there is none)."""
    if price.discount is None:
        return {}
    return {"list_price_fen": price.list_fen, "discount_fen": price.discount_fen,
            "discount": price.discount.id, "code": price.discount.code}


def place_free_order(shop: Shop, course: Course, buyer: Buyer | None, email: str | None, price: Price,
                     key_hash: str | None, fingerprint: str, ip: str | None, client: str,
                     now: dt.datetime) -> PlacedOrder:
    """An order a discount made free: fulfilled with its license at once, in one transaction, never sent to WeChat."""
    from .orders import _replayed, placed  # orders imports this module

    public_id = "ord_" + secrets.token_urlsafe(16)
    with write_transaction():
        if key_hash is not None:
            earlier = Order.get_or_none(Order.idempotency_key == key_hash)
            if earlier is not None:
                return placed(shop, _replayed(earlier, fingerprint, buyer))
        wait = limits.take(limits.key("orders", ip), limits.ORDERS_PER_CLIENT, now)
        if wait > 0:
            raise limits.refused("order", wait)
        take(price, buyer, email, now)
        if buyer is None:
            buyer_id = "buy_" + secrets.token_urlsafe(16)
            buyer = Buyer.create(public_id=buyer_id, email=email, created_at=now,
                                 token_hash=hash_token("bt_" + shop.derive_token("buyer", buyer_id)))
        order = Order.create(
            public_id=public_id, course=course, buyer=buyer, email=email,
            out_trade_no=FREE_PREFIX + now.strftime("%Y%m%d%H%M%S") + secrets.token_hex(5).upper(),
            description=course.title[:127], amount_fen=0, currency=course.currency, status="fulfilled",
            token_hash=hash_token(shop.derive_token("order", public_id)), created_at=now, expires_at=now,
            paid_at=now, idempotency_key=key_hash, idempotency_request=fingerprint if key_hash else None,
            client_key=client, sandbox=not shop.config.live, **order_fields(price))
        order = Order.get_by_id(order.id)
        issued = issue_license_for(shop, order, now)
        audit.record_all([
            audit.Event("order.created", now, "buyer", order, {"course": course.id, "amount_fen": 0,
                                                               **audit_fields(price)}, ip),
            audit.Event("order.free", now, "system", order, {"code": price.discount.code if price.discount else None}, None),
            audit.Event("license.issued", now, "system", order, {
                "license": issued.license_id, "kid": issued.kid, "expires_at": issued.expires_at.isoformat()}, None)])
        enqueue_license_mail(order, now)
    return placed(shop, order)


def order_fields(price: Price) -> dict[str, Any]:
    """The order columns that record the price: list price, discount and the discount used."""
    return {"list_price_fen": price.list_fen, "discount_fen": price.discount_fen,
            "discount": price.discount.id if price.discount is not None else None}


def describe(discount: DiscountCode | None) -> str:
    """How the console and the mail name a discount: its code, or "launch price"."""
    if discount is None:
        return ""
    return discount.code or "launch price"


# The creator's side: create, pause and resume, list with uses and revenue.

def create(*, kind: str, value: int, code: str | None = None, course_id: str | None = None,
           starts_at: dt.datetime | None = None, ends_at: dt.datetime | None = None,
           max_uses: int | None = None, once_per_buyer: bool = False, note: str = "",
           actor: str, now: dt.datetime, ip: str | None = None) -> DiscountCode:
    """Make a code or a launch price after checking it makes sense; audited, in one write transaction."""
    with write_transaction():
        return _create(kind=kind, value=value, code=code, course_id=course_id, starts_at=starts_at, ends_at=ends_at,
                       max_uses=max_uses, once_per_buyer=once_per_buyer, note=note, actor=actor, now=now, ip=ip)


def _create(*, kind: str, value: int, code: str | None, course_id: str | None, starts_at: dt.datetime | None,
            ends_at: dt.datetime | None, max_uses: int | None, once_per_buyer: bool, note: str,
            actor: str, now: dt.datetime, ip: str | None) -> DiscountCode:
    if kind not in KINDS:
        raise BillingError("bad_request", f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise BillingError("bad_request", "value must be a whole number")
    if kind == "percent" and not 1 <= value <= 100:
        raise BillingError("bad_request", "a percent code takes 1 to 100 percent off")
    if kind in ("fixed", "launch") and not 1 <= value <= 100_000_000:
        raise BillingError("bad_request", "an amount is 1 fen to 1,000,000 yuan")
    if kind == "launch":
        if code:
            raise BillingError("bad_request", "a launch price has no code: everyone gets it")
        if not course_id:
            raise BillingError("bad_request", "a launch price is for one course")
        if ends_at is None and max_uses is None:
            raise BillingError("bad_request", "a launch price ends: give an end time or a number of buyers")
        stored_code = None
    else:
        stored_code = normalise_code(code) if code else None
        if stored_code is None:
            raise BillingError("bad_request", "a code needs its text, e.g. STUDYGROUP")
        if DiscountCode.get_or_none(DiscountCode.code == stored_code) is not None:
            raise BillingError("bad_request", f"the code {stored_code} exists already")
    course = None
    if course_id:
        course = Course.get_or_none(Course.id == course_id)
        if course is None:
            raise BillingError("course_not_found")
        if kind == "launch" and value >= course.price_fen:
            raise BillingError("bad_request", "a launch price is below the list price")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise BillingError("bad_request", "the end is before the start")
    if max_uses is not None and (not isinstance(max_uses, int) or max_uses < 1):
        raise BillingError("bad_request", "at most N uses needs N of 1 or more")
    discount = DiscountCode.create(code=stored_code, kind=kind, value=value, course=course, starts_at=starts_at,
                                   ends_at=ends_at, max_uses=max_uses, once_per_buyer=bool(once_per_buyer),
                                   note=(note or "")[:120], created_at=now, created_by=actor)
    audit.record("discount.created", at=now, actor=actor, ip=ip, detail={
        "discount": discount.id, "code": stored_code, "kind": kind, "value": value, "course": course_id,
        "max_uses": max_uses, "once_per_buyer": bool(once_per_buyer)})
    return discount


def set_paused(discount_id: int, paused: bool, *, actor: str, now: dt.datetime, ip: str | None = None) -> DiscountCode:
    """Pause a code (new orders refuse it; orders placed keep their price) or resume it; audited."""
    with write_transaction():
        discount = DiscountCode.get_or_none(DiscountCode.id == discount_id)
        if discount is None:
            raise BillingError("not_found")
        changed = (DiscountCode.update(paused_at=now if paused else None)
                   .where((DiscountCode.id == discount.id)
                          & (DiscountCode.paused_at.is_null() if paused else DiscountCode.paused_at.is_null(False)))
                   .execute())
        if changed:
            audit.record("discount.paused" if paused else "discount.resumed", at=now, actor=actor, ip=ip,
                         detail={"discount": discount.id, "code": discount.code})
        return DiscountCode.get_by_id(discount.id)


def find(discount_id: int) -> DiscountCode | None:
    """One code or launch price by id."""
    return DiscountCode.get_or_none(DiscountCode.id == discount_id)


def find_by_code(code: str) -> DiscountCode | None:
    """One code by its text (any case)."""
    return DiscountCode.get_or_none(DiscountCode.code == code.strip().upper())


@dataclass(frozen=True)
class CodeSummary:
    """One discount as the console lists it."""

    discount: DiscountCode
    uses: int
    paid_orders: int
    revenue_fen: int
    discount_given_fen: int

    @property
    def label(self) -> str:
        return describe(self.discount)


def summaries(now: dt.datetime) -> list[CodeSummary]:
    """Every code and launch price with its uses now, paid orders, revenue and discount given, newest first."""
    paid = {row.discount_id: row for row in Order.select(
        Order.discount, fn.COUNT(Order.id).alias("n"), fn.SUM(Order.amount_fen).alias("revenue"),
        fn.SUM(Order.discount_fen).alias("given")).where(
        Order.discount.is_null(False) & Order.status.not_in(("pending", "closed"))).group_by(Order.discount)}
    out = []
    for discount in DiscountCode.select().order_by(DiscountCode.id.desc()):
        row = paid.get(discount.id)
        out.append(CodeSummary(discount, uses(discount.id, now).count(), row.n if row else 0,
                               int(row.revenue or 0) if row else 0, int(row.given or 0) if row else 0))
    return out


def orders_of(discount_id: int, limit: int = 200) -> list[Order]:
    """The orders that carried a discount, newest first."""
    return list(Order.select().where(Order.discount == discount_id).order_by(Order.id.desc()).limit(limit))
