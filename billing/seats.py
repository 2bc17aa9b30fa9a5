"""Classroom seats: a course sold in packs of seats, paid once, each seat a license of its own.

Rules (the creator's words are in README "Classroom seats"):

- A course is sold in packs when the creator gives it a seat offer: a price per seat, optionally a
  lower price per seat from some number of seats on (the volume price), and the most seats a pack
  may have. Packs are for one-time courses: a seat is a license for good.
- A pack is one order of ``seats × unit`` fen, paid by one WeChat Native payment like any order
  (its ``out_trade_no`` starts with ``LP``). It needs an e-mail address (the seat page link is sent
  there) and takes no discount code; the volume price shows as the order's discount.
- Its seats are made with the order (free, numbered 1..n); once it is paid, the buyer assigns them
  by e-mail on the seat page (a link with a token derived from the order, stored hashed) or the
  creator does in the console. Each assigned seat is a 0-fen order of its own (``COMPSEAT…``: a kind
  of comp, never sent to WeChat, left out of the funnel) with its own license and license mail.
- Exactly one license per seat whatever races: assigning is one write transaction that takes free
  seats by compare-and-set, and an address has at most one seat in a pack (a unique index).
- A seat moves once to another address: the old license is revoked (it shows in /revocations), the
  new address gets a new license.
- A full refund of the pack (ours or one made in 商户平台) revokes every seat's license. A partial
  refund is made by seats, chosen in the console: the seats' price (``unit × seats``) goes back and
  those seats' licenses are revoked when WeChat says SUCCESS; a seat being refunded can be neither
  assigned nor moved, and one whose refund closed or failed is usable again. A partial refund of a
  pack by amount alone is refused (``pack_refund_by_seats``); one made in 商户平台 returns money only.
- Every refusal is a 4xx with a catalogued code, an audit event, and nothing written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Iterator

from peewee import JOIN, IntegrityError

from database import write_transaction
from models import Course, License, Order, Refund, Seat, SeatOffer, SeatPack

from . import audit, discounts, limits
from .addresses import is_email_address
from .errors import BillingError
from .licenses import COMP_PREFIX, revoke_in_transaction
from .mail import enqueue_license_mail, enqueue_mail, header_text, render
from .payments import issue_license_for
from .shop import PACK_PREFIX, Shop, hash_token, is_pack

SEAT_PREFIX = COMP_PREFIX + "SEAT"  # out_trade_no of a seat's own order: a comp the pack paid for
MIN_SEATS = 2
MOST_SEATS = 500  # the largest max_seats an offer may set
MOST_FEN = 100_000_000  # a pack costs at most this (1,000,000 yuan), like a course
ENDED_REFUNDS = ("CLOSED", "FAILED")  # a seat refund that ended so gives its seats back
USABLE = ("fulfilled", "partially_refunded")
_SPLIT = re.compile(r"[\s,;，；]+")
# Refused requests about seats recorded in the audit trail per client and 10 minutes; past it, only logged.
REFUSALS_RECORDED_PER_CLIENT = limits.Rule(30, 600)
log = logging.getLogger(__name__)

__all__ = ["PACK_PREFIX", "is_pack"]


# --- the creator's offer ------------------------------------------------------------------------

def offer_for(course_id: str) -> SeatOffer | None:
    """The active seat offer of a course, if it is sold in packs."""
    return SeatOffer.get_or_none((SeatOffer.course == course_id) & (SeatOffer.active == True))  # noqa: E712


def all_offers() -> dict[str, SeatOffer]:
    """Every offer, active or not, by course id."""
    return {o.course_id: o for o in SeatOffer.select()}


def _fen(value: Any, name: str) -> int:
    if type(value) is not int or not 1 <= value <= MOST_FEN:
        raise BillingError("bad_request", f"{name} must be a whole number of fen from 1 to {MOST_FEN}")
    return value


def save_offer(shop: Shop, *, course_id: str, seat_fen: Any, volume_min: Any = None, volume_fen: Any = None,
               max_seats: Any = 100, active: bool = True, actor: str, ip: str | None = None) -> SeatOffer:
    """Create or change how a course is sold in packs, after checking every field; audited."""
    course = Course.get_or_none(Course.id == course_id) if isinstance(course_id, str) else None
    if course is None:
        raise BillingError("course_not_found")
    if course.plan != "one_time":
        raise BillingError("bad_request", "packs of seats are for one-time courses (a seat is a license for good)")
    seat_fen = _fen(seat_fen, "the seat price")
    if type(max_seats) is not int or not MIN_SEATS <= max_seats <= MOST_SEATS:
        raise BillingError("bad_request", f"the most seats in a pack is {MIN_SEATS} to {MOST_SEATS}")
    if (volume_min is None) != (volume_fen is None):
        raise BillingError("bad_request", "a volume price needs both its number of seats and its price")
    if volume_min is not None:
        if type(volume_min) is not int or not MIN_SEATS < volume_min <= max_seats:
            raise BillingError("bad_request", f"the volume price starts at {MIN_SEATS + 1} to {max_seats} seats")
        if _fen(volume_fen, "the volume price") >= seat_fen:
            raise BillingError("bad_request", "the volume price is below the seat price")
    if seat_fen * max_seats > MOST_FEN:
        raise BillingError("bad_request", f"a full pack would cost more than {MOST_FEN // 100} yuan")
    now = shop.now()
    fields = {"seat_fen": seat_fen, "volume_min": volume_min, "volume_fen": volume_fen, "max_seats": max_seats,
              "active": bool(active)}
    with write_transaction():
        before = SeatOffer.get_or_none(SeatOffer.course == course.id)
        if before is None:
            SeatOffer.create(course=course.id, updated_at=now, **fields)
        else:
            SeatOffer.update(updated_at=now, **fields).where(SeatOffer.course == course.id).execute()
        audit.record("seats.offer_saved", at=now, actor=actor, ip=ip, detail={
            "course": course.id, "after": fields, "before": None if before is None else {
                k: getattr(before, k) for k in fields}})
    return SeatOffer.get_by_id(course.id)


def unit_fen(offer: SeatOffer, seats: int) -> int:
    """What one seat costs in a pack of this many seats."""
    if offer.volume_min is not None and offer.volume_fen is not None and seats >= offer.volume_min:
        return int(offer.volume_fen)
    return int(offer.seat_fen)


# --- placing a pack -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackRequest:
    """A checked request for a pack: how many seats, at what unit price, and the order's price."""

    seats: int
    unit_fen: int
    price: discounts.Price


def pack_request(shop: Shop, course: Course, seats: Any, email: str | None, code: Any,
                 ip: str | None = None) -> PackRequest:
    """Check a request for ``seats`` seats of a course, or record and raise the catalogued refusal."""
    try:
        return _pack_request(course, seats, email, code)
    except BillingError as exc:
        record_refusal(shop, "buy", exc, actor="buyer", ip=ip, course=course.id, seats=str(seats)[:12])
        raise


def _pack_request(course: Course, seats: Any, email: str | None, code: Any) -> PackRequest:
    offer = offer_for(course.id)
    if offer is None or course.plan != "one_time":
        raise BillingError("seats_not_offered", course.id)
    if type(seats) is not int or not MIN_SEATS <= seats <= offer.max_seats:
        raise BillingError("seats_invalid", f"seats must be a whole number from {MIN_SEATS} to {offer.max_seats}")
    if not email:
        raise BillingError("seats_need_email")
    if code is not None:
        raise BillingError("seats_no_code")
    unit = unit_fen(offer, seats)
    return PackRequest(seats, unit, discounts.Price(list_fen=offer.seat_fen * seats, paid_fen=unit * seats))


def pack_description(title: str, seats: int) -> str:
    """How a pack reads on the order and at WeChat: the course and the number of seats."""
    return f"{title} ×{seats}"


def seat_token(shop: Shop, order: Order) -> str:
    """The seat page's bearer token, derived again from the pack order's public id."""
    return "st_" + shop.derive_token("seats", order.public_id)


def seat_page_path(shop: Shop, order: Order) -> str:
    """The seat page's path, token included: shown to the buyer, mailed to them, never logged."""
    return "/seats/" + seat_token(shop, order)


def pack_answer(shop: Shop, order: Order) -> dict[str, Any]:
    """What the extension API adds to a pack's order: the seats, their price and the seat page's link."""
    pack = SeatPack.get(SeatPack.order == order.id)
    return {"count": pack.seats, "unit_fen": pack.unit_fen,
            "page_url": shop.config.public_base_url.rstrip("/") + seat_page_path(shop, order)}


def open_pack(shop: Shop, order: Order, request: PackRequest, now: dt.datetime) -> SeatPack:
    """Write a new pack's row and its free seats; call inside the transaction that creates its order."""
    pack = SeatPack.create(order=order.id, seats=request.seats, unit_fen=request.unit_fen,
                           token_hash=hash_token(seat_token(shop, order)), created_at=now)
    Seat.insert_many([{"pack": pack.id, "number": n} for n in range(1, request.seats + 1)]).execute()
    audit.record("seats.pack_placed", at=now, actor="buyer", order=order,
                 detail={"seats": request.seats, "unit_fen": request.unit_fen})
    return pack


def fulfil_pack(shop: Shop, order: Order, now: dt.datetime, facts: dict[str, Any], ip: str | None) -> None:
    """What follows a claimed payment of a pack, in its transaction: the events and the seat page mail."""
    pack = SeatPack.get(SeatPack.order == order.id)
    audit.record_all([
        audit.Event("order.paid", now, "wechat", order, facts, ip),
        audit.Event("seats.opened", now, "system", order, {"seats": pack.seats, "unit_fen": pack.unit_fen})])
    if order.email:
        url = shop.config.public_base_url.rstrip("/") + seat_page_path(shop, order)
        text, html = render("seats", title=order.course.title, seats=pack.seats, url=url, order_id=order.public_id,
                            amount=f"¥{order.amount_fen // 100}.{order.amount_fen % 100:02d}")
        enqueue_mail(to=order.email, subject=header_text(f"分配座位 · Assign your seats: {order.course.title}"),
                     text=text, html=html, kind="seats", now=now, dedupe_key="seats:" + order.public_id)


# --- the seat page ----------------------------------------------------------------------------------

def pack_for_token(token: Any) -> SeatPack:
    """The pack whose seat page this token opens, or ``seat_pack_not_found``."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        raise BillingError("seat_pack_not_found")
    pack = SeatPack.get_or_none(SeatPack.token_hash == hash_token(token))
    if pack is None:
        raise BillingError("seat_pack_not_found")
    return pack


def pack_of_order(public_id: str) -> SeatPack | None:
    """The pack an order placed, if it is one (the console's way in)."""
    return (SeatPack.select().join(Order).where(Order.public_id == public_id).first()
            if len(public_id) <= 40 else None)


@dataclass(frozen=True)
class SeatLine:
    """One seat as the seat page shows it."""

    number: int
    email: str | None
    state: str  # free | assigned | refunding | withdrawn
    license_id: str | None
    license_state: str | None  # active | revoked
    moved_from: str | None
    assigned_at: dt.datetime | None

    @property
    def can_move(self) -> bool:
        return self.state == "assigned" and self.moved_from is None


@dataclass(frozen=True)
class PackView:
    """A pack with its order, course and seats, for the seat page and the console."""

    pack: SeatPack
    order: Order
    course: Course
    seats: list[SeatLine]

    @property
    def free(self) -> int:
        return sum(1 for s in self.seats if s.state == "free")

    @property
    def assigned(self) -> int:
        return sum(1 for s in self.seats if s.state in ("assigned", "refunding"))

    @property
    def usable(self) -> bool:
        return self.order.status in USABLE and self.order.flag is None

    @property
    def refundable_seats(self) -> list[SeatLine]:
        return [s for s in self.seats if s.state in ("free", "assigned")]


def _state(seat: Seat, refund_status: str | None) -> str:
    if seat.withdrawn_at is not None:
        return "withdrawn"
    if seat.refund_id is not None and refund_status not in ENDED_REFUNDS:
        return "refunding"
    return "assigned" if seat.email is not None else "free"


def pack_view(pack: SeatPack) -> PackView:
    """Everything the seat page shows of one pack."""
    order = Order.get_by_id(pack.order_id)
    rows = (Seat.select(Seat, License.license_id, License.revoked_at, Refund.status)
            .join(License, JOIN.LEFT_OUTER, on=(License.order == Seat.order))
            .switch(Seat).join(Refund, JOIN.LEFT_OUTER, on=(Refund.id == Seat.refund))
            .where(Seat.pack == pack.id).order_by(Seat.number).objects())
    lines = [SeatLine(number=s.number, email=s.email, state=_state(s, s.status),
                      license_id=s.license_id if s.order_id else None,
                      license_state=None if not s.order_id else ("revoked" if s.revoked_at else "active"),
                      moved_from=s.moved_from, assigned_at=s.assigned_at) for s in rows]
    return PackView(pack=pack, order=order, course=Course.get_by_id(order.course_id), seats=lines)


def packs(limit: int = 200) -> list[PackView]:
    """The newest packs that were paid, for the console's list."""
    query = (SeatPack.select().join(Order).where(Order.paid_at.is_null(False))
             .order_by(SeatPack.id.desc()).limit(limit))
    return [pack_view(p) for p in query]


def parse_emails(text: Any) -> list[str]:
    """Addresses typed one a line (or separated by commas), each checked, repeats dropped in any case."""
    if not isinstance(text, str) or len(text) > 60_000:
        raise BillingError("seat_email_invalid", "give the addresses as text, one a line")
    found: list[str] = []
    seen: set[str] = set()
    for word in _SPLIT.split(text.strip()):
        if not word:
            continue
        if not is_email_address(word):
            raise BillingError("seat_email_invalid", word[:254])
        if word.lower() not in seen:
            seen.add(word.lower())
            found.append(word)
    if not found:
        raise BillingError("seat_email_invalid", "no address given")
    return found


def record_refusal(shop: Shop, what: str, exc: BillingError, *, actor: str, ip: str | None,
                   order: Order | None = None, **facts: Any) -> None:
    """Record a refused request about seats in a transaction of its own (nothing else was written).

    At most ``REFUSALS_RECORDED_PER_CLIENT`` a client are kept: anyone may send bad requests, and
    storing each of them without a bound would let them fill the disk; past it they are only logged.
    """
    now = shop.now()
    with write_transaction():
        if limits.take(limits.for_client("seat_refusals", ip), REFUSALS_RECORDED_PER_CLIENT, now) > 0:
            log.warning("seats refusal not recorded (over the cap): %s %s", what, exc.code)
            return
        audit.record("seats.refused", at=now, actor=actor, ip=ip, order=order,
                     detail={"action": what, "error": exc.code, "detail": exc.detail[:200], **facts})


@contextlib.contextmanager
def _refusal_recorded(shop: Shop, pack: SeatPack, what: str, actor: str, ip: str | None,
                      **facts: Any) -> Iterator[None]:
    """Around a change to a pack: a refusal rolls it all back, then is recorded in a transaction of its own."""
    try:
        yield
    except BillingError as exc:
        record_refusal(shop, what, exc, actor=actor, ip=ip, order=Order.get_by_id(pack.order_id), **facts)
        raise


def _check_usable(order: Order) -> None:
    if order.status == "refunded":
        raise BillingError("seat_pack_refunded")
    if order.status not in USABLE or order.flag is not None:
        raise BillingError("seat_pack_not_paid", f"the pack's order is {order.status}")


def _seat_order(shop: Shop, pack_order: Order, course: Course, number: int, email: str, now: dt.datetime) -> Order:
    """The 0-fen order that carries one seat's license: never sent to WeChat, its money is the pack's."""
    return Order.create(
        public_id="ord_" + secrets.token_urlsafe(16),
        out_trade_no=SEAT_PREFIX + now.strftime("%Y%m%d%H%M%S") + secrets.token_hex(5).upper(),
        course=course.id, email=email, description=f"{course.title[:100]} · seat {number} of {pack_order.public_id}"[:127],
        amount_fen=0, currency=course.currency, status="fulfilled", token_hash=hash_token(secrets.token_urlsafe(32)),
        created_at=now, expires_at=now, paid_at=now, sandbox=pack_order.sandbox)


def _license_seat(shop: Shop, pack_order: Order, course: Course, seat: Seat, email: str, now: dt.datetime,
                  actor: str, ip: str | None) -> Order:
    """Give a seat to an address: its order, its license, the events and the license mail (inside the caller's transaction)."""
    child = _seat_order(shop, pack_order, course, seat.number, email, now)
    child = Order.get_by_id(child.id)
    issued = issue_license_for(shop, child, now)
    audit.record("license.issued", at=now, actor=actor, order=child, ip=ip, detail={
        "license": issued.license_id, "kid": issued.kid, "expires_at": issued.expires_at.isoformat(),
        "seat_of": pack_order.public_id, "seat": seat.number})
    enqueue_license_mail(child, now)
    return child


def _free_seats(pack: SeatPack) -> list[Seat]:
    """Seats no one holds, lowest number first (a seat whose refund closed or failed is free again)."""
    return list(Seat.select(Seat).join(Refund, JOIN.LEFT_OUTER, on=(Refund.id == Seat.refund))
                .where((Seat.pack == pack.id) & Seat.email.is_null() & Seat.withdrawn_at.is_null()
                       & (Seat.refund.is_null() | Refund.status.in_(ENDED_REFUNDS)))
                .order_by(Seat.number))


def assign(shop: Shop, pack: SeatPack, emails: Any, *, actor: str, ip: str | None = None) -> list[int]:
    """Give free seats to these addresses, all or none, each with its own license; returns the seat numbers.

    One write transaction: the free seats are read and taken by compare-and-set inside the write lock,
    and an address holds at most one seat of a pack (a unique index), so of two buyers racing for the
    last seat exactly one gets it; the other gets ``seats_full``.
    """
    with _refusal_recorded(shop, pack, "assign", actor, ip):
        addresses = parse_emails(emails)
        now = shop.now()
        try:
            with write_transaction():
                order = Order.get_by_id(pack.order_id)
                _check_usable(order)
                keys = [a.lower() for a in addresses]
                taken = [s.email for s in Seat.select(Seat.email).where(
                    (Seat.pack == pack.id) & Seat.email_key.in_(keys))]
                if taken:
                    raise BillingError("seat_email_taken", ", ".join(taken)[:200])
                free = _free_seats(pack)
                if len(free) < len(addresses):
                    raise BillingError("seats_full", f"{len(free)} free, {len(addresses)} asked")
                course = Course.get_by_id(order.course_id)
                numbers = []
                for seat, address in zip(free, addresses):
                    child = _license_seat(shop, order, course, seat, address, now, actor, ip)
                    changed = (Seat.update(email=address, email_key=address.lower(), order=child.id, assigned_at=now)
                               .where((Seat.id == seat.id) & Seat.email.is_null() & Seat.withdrawn_at.is_null())
                               .execute())
                    if changed != 1:
                        raise BillingError("seats_full", "a seat was taken meanwhile")
                    audit.record("seats.assigned", at=now, actor=actor, order=order, ip=ip,
                                 detail={"seat": seat.number, "email": address, "seat_order": child.public_id})
                    numbers.append(seat.number)
        except IntegrityError:
            # Another request gave this address a seat of the pack in the same instant (the unique index).
            raise BillingError("seat_email_taken", ", ".join(addresses)[:200]) from None
    return numbers


def move(shop: Shop, pack: SeatPack, number: Any, email: Any, *, actor: str, ip: str | None = None) -> None:
    """Move an assigned seat, once, to another address: the old license revoked, a new one issued and mailed."""
    with _refusal_recorded(shop, pack, "move", actor, ip, seat=str(number)[:8]):
        addresses = parse_emails(email)
        if len(addresses) != 1:
            raise BillingError("seat_email_invalid", "a seat moves to one address")
        address = addresses[0]
        if type(number) is not int:
            raise BillingError("seat_not_found")
        now = shop.now()
        try:
            with write_transaction():
                order = Order.get_by_id(pack.order_id)
                _check_usable(order)
                seat = Seat.get_or_none((Seat.pack == pack.id) & (Seat.number == number))
                if seat is None:
                    raise BillingError("seat_not_found")
                refund_status = Refund.get_by_id(seat.refund_id).status if seat.refund_id else None
                state = _state(seat, refund_status)
                if state in ("withdrawn", "refunding"):
                    raise BillingError("seat_withdrawn")
                if seat.email is None:
                    raise BillingError("seat_not_assigned")
                if seat.moved_at is not None:
                    raise BillingError("seat_already_moved", f"moved from {seat.moved_from}")
                if Seat.select().where((Seat.pack == pack.id) & (Seat.email_key == address.lower())).exists():
                    raise BillingError("seat_email_taken", address)
                old = Order.get_by_id(seat.order_id)
                revoke_in_transaction(old, reason="seat moved", actor=actor, at=now, ip=ip)
                child = _license_seat(shop, order, Course.get_by_id(order.course_id), seat, address, now, actor, ip)
                changed = (Seat.update(email=address, email_key=address.lower(), order=child.id, assigned_at=now,
                                       moved_from=seat.email, moved_at=now, previous_order=old.id)
                           .where((Seat.id == seat.id) & Seat.moved_at.is_null() & (Seat.order == old.id)).execute())
                if changed != 1:
                    raise BillingError("seat_already_moved", "moved meanwhile")
                audit.record("seats.moved", at=now, actor=actor, order=order, ip=ip, detail={
                    "seat": seat.number, "from": seat.email, "to": address, "seat_order": child.public_id,
                    "previous_order": old.public_id})
        except IntegrityError:
            raise BillingError("seat_email_taken", address) from None


# --- refunds ------------------------------------------------------------------------------------------

def refund_seats(shop: Shop, pack: SeatPack, numbers: Any, *, reason: str, actor: str,
                 ip: str | None = None) -> Refund:
    """Refund these seats of a pack (their unit price each); their licenses are revoked once WeChat says SUCCESS."""
    from .refunds import request_refund

    with _refusal_recorded(shop, pack, "refund", actor, ip):
        if (not isinstance(numbers, list) or not numbers
                or any(type(n) is not int for n in numbers) or len(set(numbers)) != len(numbers)):
            raise BillingError("seat_not_found", "choose one or more seats")
        if any(not 1 <= n <= pack.seats for n in numbers):
            raise BillingError("seat_not_found", f"seats are numbered 1 to {pack.seats}")

        def hold(order: Order, refund: Refund) -> None:
            chosen = list(Seat.select(Seat, Refund.status).join(Refund, JOIN.LEFT_OUTER, on=(Refund.id == Seat.refund))
                          .where((Seat.pack == pack.id) & Seat.number.in_(numbers)).objects())
            for seat in chosen:
                if _state(seat, seat.status) in ("withdrawn", "refunding"):
                    raise BillingError("seat_withdrawn", f"seat {seat.number}")
            Seat.update(refund=refund.id).where(Seat.id.in_([s.id for s in chosen])).execute()
            audit.record("seats.refund_requested", at=refund.created_at, actor=actor, order=order, ip=ip,
                         detail={"out_refund_no": refund.out_refund_no, "seats": sorted(numbers)})

        order = Order.get_by_id(pack.order_id)
        return request_refund(shop, order, amount_fen=pack.unit_fen * len(numbers), reason=reason,
                              revoke_license=False, actor=actor, ip=ip, hold=hold)


def check_plain_refund(order: Order, full: bool) -> None:
    """A refund by amount of a pack must be of all that is left: a partial one is made by seats."""
    if is_pack(order.out_trade_no) and not full:
        raise BillingError("pack_refund_by_seats")


def withdraw_refunded_seats(order: Order, refund: Refund, refunded_in_full: bool, now: dt.datetime) -> None:
    """After a pack's refund succeeded (in its transaction): revoke the licenses of the seats it paid back.

    A full refund takes back every seat; a refund by seats takes back the seats it holds; any other
    partial refund (made in 商户平台) returns money only.
    """
    pack = SeatPack.get_or_none(SeatPack.order == order.id)
    if pack is None:
        return
    query = Seat.select().where((Seat.pack == pack.id) & Seat.withdrawn_at.is_null())
    if not refunded_in_full:
        query = query.where(Seat.refund == refund.id)
    seats = list(query.order_by(Seat.number))
    if not seats:
        return
    revoked = []
    for seat in seats:
        if seat.order_id is not None and revoke_in_transaction(Order.get_by_id(seat.order_id), reason="refunded",
                                                               actor="system", at=now):
            revoked.append(seat.number)
    Seat.update(withdrawn_at=now).where(Seat.id.in_([s.id for s in seats])).execute()
    audit.record("seats.withdrawn", at=now, actor="system", order=order, detail={
        "out_refund_no": refund.out_refund_no, "seats": [s.number for s in seats], "licenses_revoked": revoked})
