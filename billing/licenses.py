"""What the creator does to licenses by hand: revoke, reinstate, comp, mark paid, re-send by mail."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from licensing import issue_license, key_digest, verify_license
from wechatpay.errors import WeChatPayError
from models import AuditEvent, Course, License, Order, WithdrawnKey

from . import audit
from .content import max_downloads_of
from .errors import BillingError, paid_with_alipay, wechat_unavailable
from .addresses import EMAIL_WORDS, is_email_address
from .mail import enqueue_license_mail, enqueue_mail, extension_of, license_lines, license_mail
from .payments import apply_transaction, issue_license_for
from .shop import Shop, hash_token
from .receipts import COMP_PREFIX  # out_trade_no of an order made by a comp: never sent to WeChat Pay
from database import write_transaction


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise BillingError("reason_required")
    if len(reason) > 64:
        raise BillingError("bad_request", "the reason is at most 64 characters")
    return reason


def revoke_in_transaction(order: Order, *, reason: str, actor: str, at: dt.datetime,
                          ip: str | None = None) -> bool:
    """Revoke the order's license inside the caller's write transaction; False when none is active."""
    license = License.get_or_none(License.order == order.id)
    if license is None:
        return False
    changed = License.update(revoked_at=at, revoke_reason=reason[:64]).where(
        (License.id == license.id) & License.revoked_at.is_null()).execute()
    if changed:
        audit.record("license.revoked", at=at, actor=actor, order=order, ip=ip,
                     detail={"license": license.license_id, "reason": reason[:64]})
    return bool(changed)


def _key_chain(license_id: str) -> list[License]:
    """Every key issued under one license id, oldest first; the last is the current one."""
    return list(License.select().where(License.license_id == license_id).order_by(License.issued_at, License.id))


def _period_withdrawn(order: Order) -> bool:
    """Whether this order's period was taken back already: every withdrawal records its ``period_of`` event."""
    # The event is written in the same transaction as the key it changed, so it is the record of it.
    return AuditEvent.select().where(
        (AuditEvent.order == order.id) & AuditEvent.action.in_(("license.shortened", "license.revoked"))
        & AuditEvent.detail.contains('"period_of":')).exists()


def withdraw_period(shop: Shop, order: Order, *, reason: str, actor: str, at: dt.datetime,
                    ip: str | None = None) -> str:
    """Take back what one refunded order bought, inside the caller's write transaction.

    A one-time license is revoked. A subscription period is cut from the license id's current key:
    the key is signed again ending one period earlier, and revoked when nothing paid is left, so a
    refunded renewal leaves the period before it and a refunded first period leaves the renewal.
    One order pays for one period, so it is taken back once: a renewal refunded in two parts (a
    part that revokes, then the rest) withdraws one period, not two. Returns ``revoked``,
    ``shortened`` or ``none``.
    """
    license = License.get_or_none(License.order == order.id)
    if license is None:
        return "none"
    course = Course.get_by_id(license.course_id)
    if license.plan != "subscription" or not course.period_days:
        return "revoked" if revoke_in_transaction(order, reason=reason, actor=actor, at=at, ip=ip) else "none"
    if _period_withdrawn(order):
        return "none"
    chain = _key_chain(license.license_id)
    current = chain[-1]
    if current.revoked_at is not None:
        return "none"
    ends = current.expires_at - dt.timedelta(days=course.period_days)
    if current.id != license.id and license.revoked_at is None:
        # The refunded order's own, superseded key: marked, so its history says refunded.
        License.update(revoked_at=at, revoke_reason=reason[:64]).where(License.id == license.id).execute()
    if ends <= at:
        License.update(revoked_at=at, revoke_reason=reason[:64]).where(License.id == current.id).execute()
        audit.record("license.revoked", at=at, actor=actor, order=order, ip=ip,
                     detail={"license": current.license_id, "reason": reason[:64], "period_of": order.public_id})
        return "revoked"
    key = shop.license_keys.active
    current_order = Order.get_by_id(current.order_id)
    # The shorter key keeps the download limit the license was sold with.
    signed = verify_license(current.key, shop.license_keys.public_keys(), at).payload or {}
    text = issue_license(key, license_id=current.license_id, course_id=course.id, order_id=current_order.public_id,
                         plan=course.plan, created_at=at, expires_at=ends, max_downloads=max_downloads_of(signed))
    # The longer key stays valid offline (same license id, signed): the revocation list names it by itself.
    WithdrawnKey.insert(digest=key_digest(current.key), license_id=current.license_id, expires_at=current.expires_at,
                        withdrawn_at=at).on_conflict_ignore().execute()
    License.update(key=text, kid=key.kid, expires_at=ends).where(License.id == current.id).execute()
    audit.record("license.shortened", at=at, actor=actor, order=order, ip=ip,
                 detail={"license": current.license_id, "reason": reason[:64], "period_of": order.public_id,
                         "was": current.expires_at.isoformat(), "now": ends.isoformat()})
    return "shortened"


def revoke_license(shop: Shop, order: Order, *, reason: str, actor: str, ip: str | None = None) -> None:
    """Revoke the order's license, with a reason; the extension's next poll shows it revoked."""
    reason = _reason(reason)
    with write_transaction():
        if License.get_or_none(License.order == order.id) is None:
            raise BillingError("order_has_no_license")
        revoke_in_transaction(order, reason=reason, actor=actor, at=shop.now(), ip=ip)


def reinstate_license(shop: Shop, order: Order, *, reason: str, actor: str, ip: str | None = None) -> None:
    """Lift a revocation, with a reason."""
    reason = _reason(reason)
    now = shop.now()
    with write_transaction():
        license = License.get_or_none(License.order == order.id)
        if license is None:
            raise BillingError("order_has_no_license")
        changed = License.update(revoked_at=None, revoke_reason=None).where(
            (License.id == license.id) & License.revoked_at.is_null(False)).execute()
        if changed:
            audit.record("license.reinstated", at=now, actor=actor, order=order, ip=ip,
                         detail={"license": license.license_id, "reason": reason,
                                 "was_revoked_for": license.revoke_reason})


def comp_license(shop: Shop, *, course_id: str, email: str | None, reason: str, actor: str,
                 ip: str | None = None) -> Order:
    """Grant a license without payment: an order of 0 fen, fulfilled at once, never sent to WeChat Pay."""
    reason = _reason(reason)
    course = Course.get_or_none(Course.id == course_id) if isinstance(course_id, str) else None
    if course is None:
        raise BillingError("course_not_found")
    if email is not None and not is_email_address(email):
        raise BillingError("bad_request", EMAIL_WORDS)
    now = shop.now()
    with write_transaction():
        order = Order.create(
            public_id="ord_" + secrets.token_urlsafe(16),
            out_trade_no=COMP_PREFIX + now.strftime("%Y%m%d%H%M%S") + secrets.token_hex(5).upper(),
            course=course, email=email, description=course.title[:127], amount_fen=0,
            currency=course.currency, status="fulfilled", token_hash=hash_token(secrets.token_urlsafe(32)),
            created_at=now, expires_at=now, paid_at=now, sandbox=not shop.config.live)
        audit.record("license.comped", at=now, actor=actor, order=order, ip=ip,
                     detail={"course": course.id, "reason": reason, "email": email})
        issued = issue_license_for(shop, Order.get_by_id(order.id), now)
        audit.record("license.issued", at=now, actor=actor, order=order,
                     detail={"license": issued.license_id, "kid": issued.kid,
                             "expires_at": issued.expires_at.isoformat()})
        enqueue_license_mail(Order.get_by_id(order.id), now)
    return order


def is_comp(order: Order) -> bool:
    """Tell whether the order was made by a comp rather than a purchase."""
    return order.out_trade_no.startswith(COMP_PREFIX)


def ask_wechat(shop: Shop, order: Order) -> dict[str, Any]:
    """Return what the order's payment service (WeChat Pay, or Alipay for an Alipay order) says about it now."""
    if is_comp(order):
        raise BillingError("bad_request", "a comp was never sent to a payment service")
    try:
        return shop.wechat.query_by_out_trade_no(order.out_trade_no)
    except WeChatPayError as exc:
        raise wechat_unavailable(exc, order.out_trade_no) from exc


def mark_paid(shop: Shop, order: Order, *, reason: str, actor: str, ip: str | None = None) -> str:
    """Fulfil an order by hand, only when its payment service's own answer says it is paid."""
    reason = _reason(reason)
    answer = ask_wechat(shop, order)
    if answer.get("trade_state") != "SUCCESS":
        raise BillingError("not_paid_at_alipay" if paid_with_alipay(order.out_trade_no) else "not_paid_at_wechat",
                           f"trade_state is {answer.get('trade_state')}")
    with write_transaction():
        audit.record("admin.mark_paid", at=shop.now(), actor=actor, order=order, ip=ip,
                     detail={"reason": reason, "trade_state": "SUCCESS",
                             "transaction_id": answer.get("transaction_id")})
    return apply_transaction(shop, answer, source="admin", ip=ip)


def resend_license_mail(shop: Shop, order: Order, *, actor: str, ip: str | None = None) -> None:
    """Queue the order's license mail again, to the address the learner gave."""

    license = License.get_or_none(License.order == order.id)
    if license is None:
        raise BillingError("order_has_no_license")
    if not order.email:
        raise BillingError("bad_request", "the order has no e-mail address")
    if license.revoked_at is not None:
        raise BillingError("bad_request", "the license is revoked; reinstate it first")
    lines = license_lines([license], extension_of(shop), shop)
    subject, text, html = license_mail(lines[0], license.plan)
    now = shop.now()
    with write_transaction():
        enqueue_mail(to=order.email, subject=subject, text=text, html=html, kind="resend", now=now)
        audit.record("license.resent", at=now, actor=actor, order=order, ip=ip,
                     detail={"license": license.license_id})
