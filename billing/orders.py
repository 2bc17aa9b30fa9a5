"""Placing, showing and cancelling orders."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import qrcode
from peewee import OperationalError

from models import Buyer, Course, License, Order, OrderAttempt, db
from wechatpay.errors import ApiError, WeChatPayError
from wechatpay.fields import DESCRIPTION_BYTES, fit_utf8

from . import alipay_method, audit, discounts, learners, limits, rows
from .addresses import EMAIL_WORDS, is_email_address
from .errors import BillingError, error_body
from .payments import sync_with_wechat
from .shop import Shop, hash_token, iso_utc, new_out_trade_no, new_pack_trade_no, token_matches
from database import write_transaction

log = logging.getLogger(__name__)

COURSE_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
CLOSE_ERRORS = {"expired": "order_expired", "cancelled": "payment_cancelled"}
# A code_url can be scanned for 2 hours after WeChat issued it; a fresh one is asked for before that.
CODE_URL_LIFETIME = dt.timedelta(hours=2)
CODE_URL_REFRESH_AFTER = dt.timedelta(minutes=100)
FLAG_ERRORS = {"AMOUNT_MISMATCH": "amount_mismatch", "LATE_PAYMENT": "late_payment",
               "MERCHANT_MISMATCH": "amount_mismatch", "TRANSACTION_REUSED": "amount_mismatch",
               "REFUNDED_AT_WECHAT": "payment_refunded"}


# What every answer to an order placed with an e-mail says, whether or not that address owns the
# course (an owner gets the license by mail at once: ``learners.mail_owned_licenses``).
EMAIL_NOTICE = {
    "one_time": {"zh": "如果这个邮箱以前买过本课程，许可证已发到邮箱，无需再次付款。",
                 "en": "If this e-mail bought this course before, your license is in your mailbox — "
                       "no need to pay again."},
    "subscription": {"zh": "如果这个邮箱的订阅仍有效，许可证已发到邮箱；只有想续期时才需要付款。",
                     "en": "If this e-mail's subscription is still active, your license is in your mailbox — "
                           "pay only to extend it."},
}


def email_notice(plan: str, email: str | None) -> dict[str, str] | None:
    """The words shown with an order placed with an e-mail (None without one)."""
    return dict(EMAIL_NOTICE.get(plan, EMAIL_NOTICE["one_time"])) if email else None


@dataclass(frozen=True)
class PlacedOrder:
    """A new order with the two secrets that are shown once: the order token and the buyer token."""

    order: Order
    order_token: str
    buyer_token: str


QR_MASK = 2


def qr_svg(text: str) -> str:
    """Render ``text`` as an inline SVG QR code: one path of merged dark runs, one per row."""
    # qrcode's own SVG factories build an element tree with a rect per module (milliseconds per
    # code); a path of horizontal runs drawn from the module matrix is the same image, tens of
    # times cheaper and a third of the size. Every mask pattern gives a valid code; scoring all
    # eight to pick the least blotchy one cost 3 of the 3.5 ms, so one fixed mask is used.
    code = qrcode.QRCode(border=4, mask_pattern=QR_MASK)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()
    size = len(matrix)
    runs = []
    for y, row in enumerate(matrix):
        x = 0
        while x < size:
            if row[x]:
                start = x
                while x < size and row[x]:
                    x += 1
                runs.append(f"M{start},{y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    return (f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="0 0 {size} {size}" '
            f'width="{size}mm" height="{size}mm" shape-rendering="crispEdges">'
            f'<rect width="{size}" height="{size}" fill="#fff"/>'
            f'<path fill="#000" d="{"".join(runs)}"/></svg>')


def find_course_for_sale(course_id: Any) -> Course:
    """Return the active course with this id, or raise ``course_not_found``."""
    if not isinstance(course_id, str) or len(course_id) > 64 or not COURSE_ID.match(course_id):
        raise BillingError("course_not_found", "course_id must be a kebab-case slug")
    found: list[Course] = rows.find(Course, {"id": course_id, "active": True})
    if not found:
        raise BillingError("course_not_found", f"no course {course_id!r} for sale")
    return found[0]


def _buyer_for(buyer_token: Any) -> Buyer | None:
    if buyer_token is None:
        return None
    if not isinstance(buyer_token, str) or not 10 <= len(buyer_token) <= 100:
        raise BillingError("buyer_token_invalid")
    buyer = Buyer.get_or_none(Buyer.token_hash == hash_token(buyer_token))
    if buyer is None:
        raise BillingError("buyer_token_invalid")
    return buyer


def buyer_token(shop: Shop, buyer: Buyer) -> str:
    """The buyer's bearer token, derived again from its public id."""
    return "bt_" + shop.derive_token("buyer", buyer.public_id)


def order_token(shop: Shop, order: Order) -> str:
    """The order's bearer token, derived again from its public id."""
    return shop.derive_token("order", order.public_id)


def placed(shop: Shop, order: Order) -> PlacedOrder:
    """An order with its secrets, for the buyer who placed it."""
    return PlacedOrder(order=order, order_token=order_token(shop, order), buyer_token=buyer_token(shop, order.buyer))


def _valid_license_for(buyer: Buyer, course: Course, now: Any) -> License | None:
    return (License.select().where((License.buyer == buyer.id) & (License.course == course.id)
                                   & License.revoked_at.is_null() & (License.expires_at > now))
            .order_by(License.expires_at.desc()).first())


IDEMPOTENCY_KEY_MIN, IDEMPOTENCY_KEY_MAX = 16, 200


def request_fingerprint(buyer: Buyer | None, course_id: str, email: str | None, client: str) -> str:
    """Who sent a keyed request and what it asked: 32 hex characters each.

    The sender is its buyer; a first order has no buyer yet, so its sender is its client (the
    address as ``client_key`` names it): the key alone, replayed from elsewhere, never gives the
    first order's tokens away.
    """
    who = hash_token("idem-who:" + (buyer.public_id if buyer is not None else "-:" + client))[:32]
    what = hash_token("idem-what:" + json.dumps([course_id, email]))[:32]
    return who + what


def client_key(shop: Shop, address: str | None) -> str:
    """Name a client address in the order table without storing it (keyed with the server secret)."""
    return shop.derive_token("client", limits.client(address) or "-")[:32]


def place_order(shop: Shop, *, course_id: Any, email: Any = None, buyer_token: Any = None,
                idempotency_key: str | None = None, ip: str | None = None, code: Any = None,
                seats: Any = None, method: Any = "wechat") -> PlacedOrder:
    """Create an order and its WeChat Pay Native order, or give back the one this request already made.

    The same ``Idempotency-Key`` from the same buyer (for a first order: the same client address,
    an IPv6 /64) with the same body gets the same order (from anyone else:
    ``idempotency_key_conflict``, no token); a buyer with a pending, unexpired order
    for the course gets that order; a buyer who holds a valid license for a one-time course gets
    ``already_licensed`` instead of a second charge. New orders are limited per client address
    and pending orders per address and per buyer (429 with the seconds to wait). WeChat is called
    outside any transaction; the order, its buyer, its audit events and the limit's count are
    written in one. With ``seats``, the order is a pack of classroom seats (``billing.seats``).
    """
    course = find_course_for_sale(course_id)
    method = alipay_method.checked_method(shop, method)
    if email is not None and not is_email_address(email):
        raise BillingError("bad_request", EMAIL_WORDS)
    pack = None
    if seats is not None:
        from .seats import pack_request  # seats imports this module's neighbours

        pack = pack_request(shop, course, seats, email, code, ip)
        if method != "wechat":
            raise BillingError("bad_request", "a pack of seats is paid through WeChat Pay")
    if idempotency_key is not None and not IDEMPOTENCY_KEY_MIN <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
        raise BillingError("bad_request", f"Idempotency-Key must be {IDEMPOTENCY_KEY_MIN} to "
                                          f"{IDEMPOTENCY_KEY_MAX} characters (a random UUID will do)")
    buyer = _buyer_for(buyer_token)
    key_hash = hash_token("idem:" + idempotency_key) if idempotency_key else None
    client = client_key(shop, ip)
    what = course.id if code is None else f"{course.id} {code}"
    if pack is not None:
        what = f"{what} seats={pack.seats}"
    # An Alipay order is another request than a WeChat one (WeChat's fingerprints stay as they were).
    fingerprint = request_fingerprint(buyer, what if method == "wechat" else f"{what} {method}", email, client)
    now = shop.now()
    # A pack is a new order every time (a teacher may own the course, or buy a second pack).
    order = _existing_order(shop, course, None if pack else buyer, key_hash, fingerprint, now, method)
    if order is not None and key_hash is None and code is not None:
        order = None  # a code given now: priced afresh below, not the pending order at its old price
    if order is None:
        # The price for this buyer (list, launch price or code); a refused code stops here, before WeChat.
        price = discounts.price_for(course, code, buyer, email, now) if pack is None else pack.price
        _refuse_if_over_limits(ip, client, buyer, now)
        if price.free:
            return discounts.place_free_order(shop, course, buyer, email, price, key_hash, fingerprint, ip,
                                              client, now)
        order = _new_order(shop, course, buyer, email, key_hash, fingerprint, ip, client, now, price, pack, method)
    elif order.code_url is None:
        _create_at_wechat(shop, order)  # made before orders were written only after WeChat answered
        if order.code_url is None:  # WeChat's state settled it (paid meanwhile): show what it is now
            order = Order.get_by_id(order.id)
    return placed(shop, order)


def _replayed(order: Order, fingerprint: str, buyer: Buyer | None) -> Order:
    """The order a keyed request made before, if this is the same request from the same buyer."""
    stored = order.idempotency_request
    if stored is None:  # placed before keys were bound: only its own buyer may replay it
        same_who, same_what = buyer is not None and buyer.id == order.buyer_id, True
    else:
        same_who = hmac.compare_digest(stored[:32], fingerprint[:32])
        same_what = hmac.compare_digest(stored[32:], fingerprint[32:])
    if not same_who:
        raise BillingError("idempotency_key_conflict")
    if not same_what:
        raise BillingError("idempotency_key_reused")
    return order


def _existing_order(shop: Shop, course: Course, buyer: Buyer | None, key_hash: str | None,
                    fingerprint: str, now: Any, method: str = "wechat") -> Order | None:
    if key_hash is not None:
        order = Order.get_or_none(Order.idempotency_key == key_hash)
        if order is not None:
            if order.idempotency_request is None and order.course_id != course.id:
                raise BillingError("idempotency_key_reused")
            return _replayed(order, fingerprint, buyer)
    if buyer is None:
        return None
    if course.plan == "one_time":
        held = _valid_license_for(buyer, course, now)
        if held is not None:
            raise BillingError("already_licensed", extra={"license": {
                "id": held.license_id, "key": held.key, "expires_at": iso_utc(held.expires_at)}})
    return (Order.select().where((Order.buyer == buyer.id) & (Order.course == course.id)
                                 & (Order.status == "pending") & Order.flag.is_null()
                                 & (Order.payment_method == method)
                                 & (Order.expires_at > now + dt.timedelta(minutes=2)))
            .order_by(Order.id.desc()).first())


def wechat_description(title: str, course_id: str) -> str:
    """The goods description WeChat gets: the title fitted to 127 UTF-8 bytes of characters it accepts."""
    # The title may be longer on our pages; WeChat counts bytes and refuses emoji (PARAM_ERROR).
    return fit_utf8(title, DESCRIPTION_BYTES).strip() or course_id


def _place_at_wechat(shop: Shop, order: Any) -> str:
    # Same out_trade_no and the same parameters (time_expire included) every time, so a retry
    # after a timeout can never become a second WeChat order, and a repeat gives a current code_url.
    return shop.wechat.create_native_order(
        out_trade_no=order.out_trade_no, description=order.description,
        amount_fen=order.amount_fen, notify_url=shop.notify_url, time_expire=order.expires_at)


def wechat_failure(exc: WeChatPayError, retry_after: int, out_trade_no: str = "") -> BillingError:
    """The learner's error for a failed call: the shop must fix a configuration error, an outage passes.

    Named after the method the order went to: whoever chose Alipay reads that Alipay is down.
    """
    alipay = alipay_method.method_of(out_trade_no) == alipay_method.ALIPAY
    if isinstance(exc, ApiError) and exc.is_config_error:
        # PARAM_ERROR, a refused key id…: retrying cannot help, so never say "try again in 10 s".
        return BillingError("alipay_setup_error" if alipay else "shop_setup_error", exc.code)
    code = exc.code if isinstance(exc, ApiError) else type(exc).__name__
    return BillingError("alipay_unavailable" if alipay else "wechat_unavailable", code, retry_after=retry_after)


def _refuse_if_over_limits(ip: str | None, client: str, buyer: Buyer | None, now: dt.datetime) -> None:
    """Refuse before WeChat is called: too many new orders, or too many unpaid ones, from this client or buyer."""
    limits.refuse_if_over("orders", ip, limits.ORDERS_PER_CLIENT, now)
    _refuse_if_many_pending("client_key", client, limits.PENDING_ORDERS_PER_CLIENT, now, "address")
    if buyer is not None:
        _refuse_if_many_pending("buyer_id", buyer.id, limits.PENDING_ORDERS_PER_BUYER, now, "buyer")


@functools.lru_cache(maxsize=None)
def _pending_sql(column: str, param: str) -> str:
    """The expiry times of a client's (or buyer's) unexpired pending orders, soonest first: text made once."""
    return (f'SELECT "expires_at" FROM "{Order._meta.table_name}" WHERE "{column}" = {param} '
            f"AND \"status\" = 'pending' AND \"expires_at\" > {param} ORDER BY \"expires_at\" LIMIT {param}")


def _refuse_if_many_pending(column: str, value: Any, cap: int, now: dt.datetime, name: str) -> None:
    found = db.execute_sql(_pending_sql(column, db.obj.param), (value, Order.expires_at.db_value(now), cap))
    expiring = [Order.expires_at.python_value(row[0]) for row in found.fetchall()]
    if len(expiring) >= cap:
        # The earliest of them expires first: then one more may be placed.
        wait = (expiring[0] - now).total_seconds()
        raise BillingError("too_many_pending_orders", f"{cap} unpaid orders from this {name}",
                           retry_after=limits.retry_after(wait))


def _earlier_attempt(key_hash: str | None, fingerprint: str, now: dt.datetime) -> OrderAttempt | None:
    """The unconfirmed attempt this keyed request made before, if its order may still be placed."""
    if key_hash is None:
        return None
    attempt = OrderAttempt.get_or_none(OrderAttempt.idempotency_key == key_hash)
    if attempt is None:
        return None
    if not hmac.compare_digest(attempt.idempotency_request[:32], fingerprint[:32]):
        raise BillingError("idempotency_key_conflict")
    if not hmac.compare_digest(attempt.idempotency_request[32:], fingerprint[32:]):
        raise BillingError("idempotency_key_reused")
    # Too near its time_expire to be worth paying: a new attempt (WeChat refuses payment after it anyway).
    return attempt if attempt.expires_at > now + dt.timedelta(minutes=2) else None


def _keep_attempt(shop: Shop, key_hash: str | None, fingerprint: str, out_trade_no: str,
                  expires_at: dt.datetime, now: dt.datetime, exc: WeChatPayError) -> None:
    """Record a failed Native call, and for a keyed request the attempt its retry must send again."""
    if key_hash is None:
        _record_wechat_failure(shop, None, "create_native_order", exc, out_trade_no)
        return
    # WeChat may have made the order before failing (a 500, a timeout): its retry must send the same
    # out_trade_no and time_expire, or one purchase attempt becomes two WeChat orders.
    attempt = {OrderAttempt.idempotency_request: fingerprint, OrderAttempt.out_trade_no: out_trade_no,
               OrderAttempt.expires_at: expires_at, OrderAttempt.created_at: now}

    def keep() -> None:
        # Attempts past their time_expire can no longer be paid: they go as new ones come.
        OrderAttempt.delete().where(OrderAttempt.expires_at < now).execute()
        (OrderAttempt.insert({OrderAttempt.idempotency_key: key_hash, **attempt})
         .on_conflict(conflict_target=[OrderAttempt.idempotency_key], update=attempt).execute())

    _record_wechat_failure(shop, None, "create_native_order", exc, out_trade_no, also=keep)


def _new_order(shop: Shop, course: Course, buyer: Buyer | None, email: str | None, key_hash: str | None,
               fingerprint: str, ip: str | None, client: str, now: dt.datetime,
               price: discounts.Price | None = None, pack: Any = None, method: str = "wechat") -> Order:
    public_id, description = "ord_" + secrets.token_urlsafe(16), wechat_description(course.title, course.id)
    if pack is not None:
        from .seats import pack_description

        description = wechat_description(pack_description(course.title, pack.seats), course.id)
    attempt = _earlier_attempt(key_hash, fingerprint, now)
    if pack is not None:
        fresh = new_pack_trade_no(now)
    else:
        fresh = alipay_method.new_alipay_out_trade_no(now) if method == "alipay" else new_out_trade_no(now)
    out_trade_no: str = fresh if attempt is None else attempt.out_trade_no
    # The retry of a keyed request WeChat did not confirm sends the very same order (time_expire too).
    expires_at: dt.datetime = now + shop.config.order_ttl if attempt is None else attempt.expires_at
    price = price or discounts.Price(course.price_fen, course.price_fen)
    try:
        # The same parameters, time_expire included, are what a code_url refresh sends again.
        code_url = shop.wechat.create_native_order(
            out_trade_no=out_trade_no, description=description, amount_fen=price.paid_fen,
            notify_url=shop.notify_url, time_expire=expires_at)
    except WeChatPayError as exc:
        _keep_attempt(shop, key_hash, fingerprint, out_trade_no, expires_at, now, exc)
        raise wechat_failure(exc, 10, out_trade_no) from exc
    svg = qr_svg(code_url)
    with discounts.give_back_on_loss(shop, out_trade_no, ip), write_transaction():
        if key_hash is not None:
            # Another request with this key won the race; the WeChat order just made is never shown.
            earlier = Order.get_or_none(Order.idempotency_key == key_hash)
            if earlier is not None:
                return _replayed(earlier, fingerprint, buyer)
            if attempt is not None:
                OrderAttempt.delete().where(OrderAttempt.idempotency_key == key_hash).execute()
        wait = limits.take(limits.for_client("orders", ip), limits.ORDERS_PER_CLIENT, now)
        if wait > 0:
            raise limits.refused("order", wait)
        discounts.take(price, buyer, email, now)  # the code's use, in this transaction: the last one goes once
        if buyer is None:
            buyer_id = "buy_" + secrets.token_urlsafe(16)
            buyer = rows.create(Buyer, dict(public_id=buyer_id, email=email, created_at=now,
                                            token_hash=hash_token("bt_" + shop.derive_token("buyer", buyer_id))))
        # Prepared SQL (billing.rows): Peewee would build this 25-column insert's text anew, in the write lock.
        order = rows.create(Order, dict(
            public_id=public_id, out_trade_no=out_trade_no, course=course, buyer=buyer, email=email,
            description=description, amount_fen=price.paid_fen, currency=course.currency, status="pending",
            token_hash=hash_token(shop.derive_token("order", public_id)), created_at=now, expires_at=expires_at,
            idempotency_key=key_hash, idempotency_request=fingerprint if key_hash else None,
            client_key=client, code_url=code_url, code_url_at=now, qr_svg=svg, sandbox=not shop.config.live,
            payment_method=method,
            **discounts.order_fields(price)))
        audit.record_all([audit.Event("order.created", now, "buyer", order,
                                      {"course": course.id, "amount_fen": price.paid_fen,
                                       **discounts.audit_fields(price)}, ip),
                          audit.Event("order.wechat_created", now, "system", order, None, None)])
        if pack is not None:
            from .seats import open_pack

            open_pack(shop, order, pack, now)
        if email is not None:
            learners.mail_owned_licenses(shop, order, course, email, now, ip)
    return order


def _create_at_wechat(shop: Shop, order: Order) -> None:
    try:
        code_url = _place_at_wechat(shop, order)
    except ApiError as exc:
        _record_wechat_failure(shop, order, "create_native_order", exc)
        if not exc.retryable:
            # WeChat refuses the order itself (paid: "201 商户订单号重复", never a v3 ORDERPAID; closed…):
            # its state, not an error code, says which.
            try:
                sync_with_wechat(shop, order, source="create")
            except WeChatPayError:
                raise wechat_failure(exc, 10, order.out_trade_no) from exc
            if Order.get_by_id(order.id).status != "pending":
                order.code_url = None
                return
            if exc.kind == "rejected":
                raise BillingError("order_closed", exc.code) from exc
        raise wechat_failure(exc, 10, order.out_trade_no) from exc
    except WeChatPayError as exc:
        _record_wechat_failure(shop, order, "create_native_order", exc)
        raise wechat_failure(exc, 10, order.out_trade_no) from exc
    svg = qr_svg(code_url)
    now = shop.now()
    with write_transaction():
        Order.update(code_url=code_url, qr_svg=svg, code_url_at=now).where(Order.id == order.id).execute()
        audit.record("order.wechat_created", at=now, order=order)
    order.code_url, order.qr_svg = code_url, svg


def refresh_code_url(shop: Shop, order: Any) -> bool:
    """Replace a pending order's code_url before it is 2 hours old by placing the same order again.

    Returns True when a new code_url was stored. Only one caller wins the compare-and-set
    on ``code_url_at``; a failure leaves the old code in place (and the next poll tries again).
    WeChat may give back the same code_url (undocumented): it still dies 2 hours after it was
    first issued, so its issue time is kept and WeChat is asked again at issue + 2 hours.
    """
    now = shop.now()
    issued = order.code_url_at
    if (order.status != "pending" or order.code_url is None or issued is None
            or now - issued < CODE_URL_REFRESH_AFTER or order.expires_at <= now
            or (order.code_url_retry_at is not None and now < order.code_url_retry_at)):
        return False
    stored = Order.get_by_id(order.id)
    try:
        # The stored row, not the poll's few columns: the same parameters as the first time, to the byte.
        code_url = _place_at_wechat(shop, stored)
    except WeChatPayError as exc:
        log.warning("could not refresh the code_url of %s: %s", order.public_id, exc)
        return False
    if code_url == stored.code_url and now < issued + CODE_URL_LIFETIME:
        with write_transaction():
            Order.update(code_url_retry_at=issued + CODE_URL_LIFETIME).where(
                (Order.id == order.id) & (Order.code_url_at == issued)).execute()
        return False
    svg = qr_svg(code_url)
    with write_transaction():
        changed = (Order.update(code_url=code_url, qr_svg=svg, code_url_at=now, code_url_retry_at=None)
                   .where((Order.id == order.id) & (Order.code_url_at == issued) & (Order.status == "pending"))
                   .execute())
        if changed:
            audit.record("order.code_url_refreshed", at=now, order=Order.get_by_id(order.id),
                         detail={"issued_before": issued.isoformat()})
    return bool(changed)


def _record_wechat_failure(shop: Shop, order: Order | None, call: str, exc: Exception,
                           out_trade_no: str | None = None, also: Callable[[], Any] | None = None) -> None:
    detail: dict[str, Any] = {"call": call, "error": type(exc).__name__}
    if isinstance(exc, ApiError):
        detail.update(status=exc.status, code=exc.code)
    if order is None:  # a new order is written only once WeChat has it
        detail["out_trade_no"] = out_trade_no
    # Named after the order's own method: an Alipay order's failed call is Alipay's, never WeChat Pay's.
    method = alipay_method.method_of((order.out_trade_no if order is not None else out_trade_no) or "")
    log.warning("%s %s failed for order %s: %s", "Alipay" if method == alipay_method.ALIPAY else "WeChat Pay", call,
                order.public_id if order is not None else out_trade_no, detail)
    try:
        with write_transaction():
            audit.record(f"{method}.call_failed", at=shop.now(), order=order, detail=detail)
            if also is not None:
                also()
    except OperationalError:
        log.exception("could not record the failed WeChat call")


def order_for_token(public_id: str, token: str | None) -> Order:
    """Return the order only when the token is its own; otherwise the same ``order_not_found``."""
    order = Order.get_or_none(Order.public_id == public_id) if len(public_id) <= 40 else None
    if order is None or not token or not token_matches(token, order.token_hash):
        raise BillingError("order_not_found")
    return order


def order_view(shop: Shop, order: Any, license: Any = None, *, look_up_license: bool = True) -> dict[str, Any]:
    """Return what the extension sees of an order (a model row or a row read by ``poll_order``)."""
    if license is None and look_up_license and order.status != "pending":  # a pending order has none yet
        license = License.get_or_none(License.order == order.id)
    error = None
    if order.flag in FLAG_ERRORS:
        error = FLAG_ERRORS[order.flag]
        if error == "payment_refunded" and alipay_method.method_of(order.out_trade_no) == alipay_method.ALIPAY:
            error = "payment_refunded_at_alipay"  # the learner paid with Alipay: say where the money went back
    elif order.status == "closed":
        error = CLOSE_ERRORS.get(order.close_reason or "", "order_closed")
    elif order.status == "paid":
        error = "license_delayed"
    elif order.status == "pending" and order.trade_state == "PAYERROR":
        error = "payment_failed"
    final = order.status not in ("pending", "paid") or order.flag is not None
    return {
        "order_id": order.public_id,
        "status": order.status,
        "course_id": order.course_id,
        "amount_fen": order.amount_fen,
        "list_price_fen": order.amount_fen if order.list_price_fen is None else order.list_price_fen,
        "discount_fen": order.discount_fen or 0,
        "currency": order.currency,
        # A flagged order is final: no QR to pay it (again) with.
        "code_url": order.code_url if order.status == "pending" and order.flag is None else None,
        "qr_svg": order.qr_svg if order.status == "pending" and order.flag is None else None,
        "created_at": iso_utc(order.created_at),
        "expires_at": iso_utc(order.expires_at),
        "paid_at": iso_utc(order.paid_at),
        "out_trade_no": order.out_trade_no,
        "method": alipay_method.method_of(order.out_trade_no),
        "transaction_id": order.transaction_id,
        "license": None if license is None else {
            "id": license.license_id,
            "key": license.key,
            "expires_at": iso_utc(license.expires_at),
            "plan": license.plan,
            "state": "revoked" if license.revoked_at else (
                "expired" if license.expires_at <= shop.now() else "active"),
        },
        "error": None if error is None else error_body(error)["error"],
        "final": final,
        "poll_after_ms": None if final else poll_after_ms(shop, order),
    }


def poll_after_ms(shop: Shop, order: Any) -> int:
    """Poll briskly while a learner is likely to be paying, then ease off."""
    young = shop.now() - order.created_at < dt.timedelta(minutes=5)
    return shop.poll_after_ms if young else 4 * shop.poll_after_ms


# A status poll is the hottest path: one parameterised query, no ORM query building.
_ORDER_COLUMNS = ("id", "public_id", "token_hash", "status", "course_id", "amount_fen", "list_price_fen",
                  "discount_fen", "currency", "code_url", "code_url_at", "code_url_retry_at", "qr_svg",
                  "created_at", "expires_at", "paid_at", "out_trade_no", "transaction_id",
                  "flag", "close_reason", "trade_state", "last_queried_at")
_LICENSE_COLUMNS = ("license_id", "key", "expires_at", "plan", "revoked_at")
# Read for a poll, but not part of a final order's answer (or, for the token, not for the tag).
_UNSHOWN_WHEN_FINAL = frozenset({"token_hash", "code_url", "code_url_at", "qr_svg", "last_queried_at"})


@functools.cache
def _poll_sql(param: str) -> str:
    columns = [f'o."{c}"' for c in _ORDER_COLUMNS] + [f'l."{c}"' for c in _LICENSE_COLUMNS]
    return ('SELECT ' + ", ".join(columns)
            + ' FROM "order" AS o LEFT OUTER JOIN "license" AS l ON l."order_id" = o."id"'
            + ' WHERE o."public_id" = ' + param + ' ORDER BY l."id" DESC LIMIT 1')


def _row(model: Any, columns: tuple[str, ...], values: tuple[Any, ...]) -> SimpleNamespace:
    fields = model._meta.columns
    return SimpleNamespace(**{c: fields[c].python_value(v) for c, v in zip(columns, values)})


_AT = {c: i for i, c in enumerate(_ORDER_COLUMNS + tuple("license_" + c for c in _LICENSE_COLUMNS))}
# What a final order's answer is made of, as stored: the order's shown columns and its license's.
_TAGGED = tuple(i for c, i in _AT.items() if c not in _UNSHOWN_WHEN_FINAL)


def _read_for_poll(public_id: str, token: str | None) -> tuple[Any, ...]:
    """The poll's one query, only for the holder of the order's token (else ``order_not_found``)."""
    if len(public_id) > 40 or not token:
        raise BillingError("order_not_found")
    found = db.execute_sql(_poll_sql(db.obj.param), (public_id,)).fetchone()
    if found is None or not token_matches(token, found[_AT["token_hash"]]):
        raise BillingError("order_not_found")
    return tuple(found)


def _answer_tag(shop: Shop, found: tuple[Any, ...]) -> str | None:
    """An entity tag for the poll answer of a final order (None while it is still pending or paid).

    A final order's answer changes only when a refund, a revoke or an expiry changes a column it is
    made of, so the tag is a digest of those columns as stored (nothing converted) and of whether
    the license has expired by now: a client that sends it back in ``If-None-Match`` gets a
    bodiless 304 while nothing changed.
    """
    if found[_AT["status"]] in ("pending", "paid") and found[_AT["flag"]] is None:
        return None
    values = [found[i] for i in _TAGGED]
    expires = found[_AT["license_expires_at"]]
    if expires is not None:
        values.append(License.expires_at.python_value(expires) <= shop.now())
    return hashlib.sha256(repr(values).encode()).hexdigest()[:32]


def unchanged_answer_tag(shop: Shop, public_id: str, token: str | None, offered: str) -> str | None:
    """The tag of a final order's answer when ``offered`` (an If-None-Match header) already holds it.

    One read and a digest, nothing converted or built: most polls of a finished order end here.
    None means the client holds no current answer; a wrong token is ``order_not_found`` as in a poll.
    """
    tag = _answer_tag(shop, _read_for_poll(public_id, token))
    if tag is None:
        return None
    return tag if _holds(offered, tag) else None


def _holds(offered: str, tag: str) -> bool:
    """Whether an If-None-Match value names ``tag`` (or is ``*``); weak tags never match ours, as before."""
    quoted = f'"{tag}"'
    if offered == quoted:
        return True
    return any(part.strip() in (quoted, "*") for part in offered.split(","))


def poll_order(shop: Shop, public_id: str, token: str | None) -> tuple[SimpleNamespace, SimpleNamespace | None]:
    """Read an order and its license in one query, only for the holder of its token.

    The order also carries ``answer_tag``: the ETag of its answer when it is final (else None).
    """
    found = _read_for_poll(public_id, token)
    order = _row(Order, _ORDER_COLUMNS, found[:len(_ORDER_COLUMNS)])
    order.answer_tag = _answer_tag(shop, found)
    rest = found[len(_ORDER_COLUMNS):]
    license = None if rest[0] is None else _row(License, _LICENSE_COLUMNS, rest)
    return order, license


# WeChat advises closing an order no sooner than 5 minutes after it was made (建议…最短5分钟).
CLOSE_AT_WECHAT_AFTER = dt.timedelta(minutes=5)


def cancel_order(shop: Shop, order: Order, ip: str | None = None) -> Order:
    """Cancel a pending order here once WeChat says it is unpaid; close it at WeChat when that is allowed.

    A close is never proof of "not paid" (v3 documents no answer for closing a paid order),
    so the order is queried first and WeChat's ``trade_state`` decides. The order is closed
    here at once; at WeChat only 5 minutes after creation (now, or later by the reconcile
    job), so a refused early close never tells the learner WeChat is down. A payment that
    still lands in between arrives as a late payment and is flagged.
    """
    if order.status == "closed":
        return order
    if order.status != "pending":
        raise BillingError("order_already_paid")
    if order.code_url is not None:
        try:
            sync_with_wechat(shop, order, source="cancel")
        except WeChatPayError as exc:
            _record_wechat_failure(shop, order, "query_by_out_trade_no", exc)
            raise wechat_failure(exc, 5, order.out_trade_no) from exc
        if Order.get_by_id(order.id).status != "pending":
            raise BillingError("order_already_paid")
    now = shop.now()
    with write_transaction():
        changed = (Order.update(status="closed", closed_at=now, close_reason="cancelled")
                   .where((Order.id == order.id) & (Order.status == "pending")).execute())
        if changed:
            audit.record("order.cancelled", at=now, actor="buyer", order=order, ip=ip)
    fresh = Order.get_by_id(order.id)
    if fresh.status not in ("closed",):
        raise BillingError("order_already_paid")
    if changed and now - fresh.created_at >= CLOSE_AT_WECHAT_AFTER:
        close_at_wechat(shop, fresh)  # a failure is left to the reconcile job
    return Order.get_by_id(order.id)


def close_at_wechat(shop: Shop, order: Order) -> bool:
    """Close an order we closed here at WeChat too, and note when; False when WeChat did not confirm it."""
    try:
        shop.wechat.close_order(order.out_trade_no)
    except ApiError as exc:
        if exc.code != "ORDER_CLOSED":
            _record_wechat_failure(shop, order, "close_order", exc)
            return False
    except WeChatPayError as exc:
        _record_wechat_failure(shop, order, "close_order", exc)
        return False
    with write_transaction():
        Order.update(wechat_closed_at=shop.now()).where(Order.id == order.id).execute()
    return True
