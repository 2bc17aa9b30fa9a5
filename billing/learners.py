"""What a learner can ask about their own purchases: history, licenses, revocations, a resent license mail."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from typing import Any, Iterable

from peewee import fn

from licensing import sign_revocations
from models import Buyer, Course, License, Order, WithdrawnKey, db

from . import audit, limits
from .receipts import api_receipt
from .errors import BillingError
from .mail import enqueue_mail, extension_of, header_text, license_lines, render
from .addresses import EMAIL_WORDS, is_email_address
from .shop import Shop, hash_token, iso_utc, token_matches
from database import write_transaction

LICENSE_ID_MAX = 36


# --- the buyer and their purchases --------------------------------------------------------

def buyer_for_token(token: str | None) -> Buyer:
    """Return the buyer whose token this is, or raise ``unauthorized``; the token is compared hashed, in constant time."""
    if not token or len(token) > 200:
        raise BillingError("unauthorized", "send Authorization: Bearer <buyer_token>")
    buyer = Buyer.get_or_none(Buyer.token_hash == hash_token(token))
    if buyer is None or not token_matches(token, buyer.token_hash):
        raise BillingError("unauthorized", "send Authorization: Bearer <buyer_token>")
    return buyer


def license_state(license: License, now: dt.datetime) -> str:
    """``revoked``, ``expired`` or ``active``."""
    if license.revoked_at is not None:
        return "revoked"
    return "expired" if license.expires_at <= now else "active"


def current_licenses(rows: Iterable[License]) -> list[License]:
    """Keep, for each license id, the key issued last (a renewal supersedes the key before it)."""
    latest: dict[str, License] = {}
    for row in rows:
        seen = latest.get(row.license_id)
        if seen is None or (row.issued_at, row.id) > (seen.issued_at, seen.id):
            latest[row.license_id] = row
    return sorted(latest.values(), key=lambda lic: (lic.issued_at, lic.id))


def order_history(shop: Shop, buyer: Buyer) -> list[dict[str, Any]]:
    """Every order of this buyer, newest first, with the ids a learner gives support."""
    now = shop.now()
    orders = list(Order.select(Order, Course).join(Course).where(Order.buyer == buyer.id)
                  .order_by(Order.created_at.desc(), Order.id.desc()))
    licenses = {lic.order_id: lic for lic in License.select().where(License.order.in_([o.id for o in orders]))}
    states = {lic.license_id: license_state(lic, now)
              for lic in current_licenses(License.select().where(
                  License.license_id.in_([lic.license_id for lic in licenses.values()])))}
    history = []
    for order in orders:
        lic = licenses.get(order.id)
        history.append({
            "order_id": order.public_id,
            "course_id": order.course_id,
            "amount_fen": order.amount_fen,
            "currency": order.currency,
            "status": order.status,
            "created_at": iso_utc(order.created_at),
            "paid_at": iso_utc(order.paid_at),
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "license": None if lic is None else {
                "id": lic.license_id,
                # A renewed key is superseded, not expired: the id's state is the one that counts,
                # but a revoked key stays revoked.
                "state": "revoked" if lic.revoked_at else states.get(lic.license_id, license_state(lic, now)),
                "expires_at": iso_utc(lic.expires_at),
            },
            # What the learner shows for reimbursement: amount, time in Beijing, WeChat's number, the seller.
            "receipt": api_receipt(shop, order),
        })
    return history


def license_view(license: License, now: dt.datetime) -> dict[str, Any]:
    """What the learner sees of one license, key included."""
    return {"id": license.license_id, "course_id": license.course_id, "order_id": license.order.public_id,
            "state": license_state(license, now), "expires_at": iso_utc(license.expires_at),
            "key": license.key}


def buyer_licenses(shop: Shop, buyer: Buyer) -> list[dict[str, Any]]:
    """The buyer's licenses, one per license id (the latest key after renewals)."""
    now = shop.now()
    rows = License.select(License, Order).join(Order).where(
        (License.buyer == buyer.id) | (Order.buyer == buyer.id))
    return [license_view(lic, now) for lic in current_licenses(rows)]


def license_status(shop: Shop, license_id: str) -> dict[str, Any]:
    """The state of one license id, for an extension checking in; ``license_not_found`` otherwise."""
    if not isinstance(license_id, str) or not 1 <= len(license_id) <= LICENSE_ID_MAX:
        raise BillingError("license_not_found")
    rows = current_licenses(License.select().where(License.license_id == license_id))
    if not rows:
        raise BillingError("license_not_found")
    lic = rows[-1]
    return {"id": lic.license_id, "state": license_state(lic, shop.now()), "expires_at": iso_utc(lic.expires_at)}


def revoked_license_ids() -> list[str]:
    """Every license id whose latest key is revoked, sorted."""
    ids = [row.license_id for row in License.select(License.license_id).where(License.revoked_at.is_null(False))
           .distinct()]
    current = current_licenses(License.select().where(License.license_id.in_(ids))) if ids else []
    return sorted(lic.license_id for lic in current if lic.revoked_at is not None)


def revoked_keys(now: dt.datetime) -> list[str]:
    """The digests of single keys replaced by shorter ones (refunded periods) that would still be valid."""
    return sorted(row.digest for row in WithdrawnKey.select(WithdrawnKey.digest).where(WithdrawnKey.expires_at > now))


def revocation_list(shop: Shop) -> str:
    """The signed revocation list (typ ``revocations``), one ``DATA|SIG`` line, by the active license key."""
    now = shop.now()
    return sign_revocations(shop.license_keys.active, revoked_license_ids(), now, revoked_keys(now))


# --- the license again, by e-mail ----------------------------------------------------------

def address_key(address: str) -> str:
    """Name an e-mail address in the rate table without storing it."""
    return "resend-to:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()[:40]


def request_resend(shop: Shop, address: Any, ip: str | None) -> bool:
    """Mail every license bought with ``address``; return whether a mail was queued (never shown to the asker)."""
    if not isinstance(address, str) or not is_email_address(address.strip()):
        raise BillingError("bad_request", EMAIL_WORDS)
    address = address.strip()
    now = shop.now()
    with write_transaction():
        wait = limits.take(limits.for_client("resend-ip", ip), limits.RESEND_PER_CLIENT, now)
        if not wait:
            if limits.take(address_key(address), limits.RESEND_PER_ADDRESS, now):
                return False  # silently dropped: the answer must not tell this apart
            rows = (License.select(License, Order).join(Order)
                    .where(fn.LOWER(Order.email) == address.lower()))
            licenses = current_licenses(rows)
            if not licenses:
                return False
            lines = license_lines(licenses, extension_of(shop))
            text, html = render("resend", licenses=lines, on_order=False, subscription=False)
            enqueue_mail(to=licenses[-1].order.email, subject="您的 Learning Buddy 许可证 · Your Learning Buddy licenses",
                         text=text, html=html, kind="resend", now=now)
            audit.record("license.resent", at=now, actor="learner", ip=ip,
                         detail={"licenses": [lic.license_id for lic in licenses]})
            return True
    raise limits.refused("resend", wait)


@functools.lru_cache(maxsize=None)
def _owned_sql(param: str) -> str:
    """The license ids of a course bought with an address (any case)."""
    return (f'SELECT DISTINCT l."license_id" FROM "{License._meta.table_name}" AS l '
            f'JOIN "{Order._meta.table_name}" AS o ON o."id" = l."order_id" '
            f'WHERE LOWER(o."email") = {param} AND l."course_id" = {param}')


def active_licenses_of_address(address: str, course: Course, now: dt.datetime) -> list[License]:
    """The licenses of ``course`` bought with ``address`` (any case) whose latest key opens it now."""
    # On every order that gives an address, inside its write transaction: the text is made once.
    found = db.execute_sql(_owned_sql(db.obj.param), (address.lower(), course.id))
    ids = [row[0] for row in found.fetchall()]
    if not ids:
        return []
    rows = License.select(License, Order).join(Order).where(License.license_id.in_(ids))
    return [lic for lic in current_licenses(rows)
            if lic.revoked_at is None and lic.expires_at > now and lic.order.status != "refunded"]


def mail_owned_licenses(shop: Shop, order: Order, course: Course, address: str, now: dt.datetime,
                        ip: str | None) -> bool:
    """Inside the new order's transaction: if ``address`` already holds an active license for the
    course, queue that license to it now, so the learner need not pay again.

    The order is placed either way and its answer never says which happened (no ownership oracle);
    the mails draw on the address's resend budget, so placing orders cannot flood a mailbox.
    Returns whether a mail was queued.
    """
    # A buyer placing this order who holds the license already (their own token) has it on this
    # device; only someone else with the address, a new device, needs the mail.
    licenses = [lic for lic in active_licenses_of_address(address, course, now)
                if order.buyer_id not in (lic.buyer_id, lic.order.buyer_id)]
    if not licenses or limits.take(address_key(address), limits.RESEND_PER_ADDRESS, now):
        return False
    text, html = render("resend", licenses=license_lines(licenses, extension_of(shop)), on_order=True,
                        subscription=course.plan == "subscription")
    enqueue_mail(to=address, subject=f"您已拥有本课程 · You already own this course: {header_text(course.title)}"[:200],
                 text=text, html=html, kind="owned", now=now)
    audit.record("license.mailed_on_order", at=now, actor="learner", order=order, ip=ip,
                 detail={"licenses": [lic.license_id for lic in licenses]})
    return True


# --- subscriptions: a reminder before the access ends --------------------------------------

def remind_renewals(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Queue one reminder per subscription expiry that falls within the reminder window."""
    mailer = shop.mailer
    days = mailer.renewal_reminder_days if mailer else 7
    base = mailer.public_base_url if mailer else ""
    queued = 0
    with write_transaction():
        candidates = (License.select(License, Order, Course).join(Order).switch(License).join(Course)
                      .where((License.plan == "subscription") & License.revoked_at.is_null()
                             & (License.expires_at > now) & (License.expires_at <= now + dt.timedelta(days=days))))
        ids = {lic.license_id for lic in candidates}
        for lic in current_licenses(License.select().where(License.license_id.in_(list(ids)))) if ids else []:
            if lic.revoked_at is not None or not (now < lic.expires_at <= now + dt.timedelta(days=days)):
                continue  # renewed beyond the window, or revoked since
            address = lic.order.email or (lic.buyer.email if lic.buyer_id else None)
            if not address:
                continue
            line = license_lines([lic], extension_of(shop))[0]
            text, html = render("renewal", license=line, renew_url=f"{base}/buy/{lic.course_id}",
                                days_left=max(1, (lic.expires_at - now).days))
            subject = f"订阅即将到期 · Your subscription ends soon: {lic.course.title}"
            mail = enqueue_mail(to=address, subject=subject, text=text, html=html, kind="renewal_reminder",
                                now=now, dedupe_key=f"renewal:{lic.license_id}:{lic.expires_at:%Y%m%dT%H%M%S}")
            if mail is not None:
                audit.record("mail.renewal_reminder", at=now, order=lic.order,
                             detail={"license": lic.license_id, "expires_at": iso_utc(lic.expires_at)})
                queued += 1
        limits.forget_idle(now)
    return {"reminders": queued}


def renewal_reminder_job(shop: Shop, now: dt.datetime) -> dict[str, Any]:
    """Remind subscribers whose access ends soon."""
    return remind_renewals(shop, now)

