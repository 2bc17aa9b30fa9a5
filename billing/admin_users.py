"""The creator's accounts: argon2id passwords, a sign-in throttle shared by all workers, and TOTP."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from models import AdminSignInLink, AdminUser

from . import audit, limits
from .addresses import is_email_address
from .errors import BillingError
from .mail import enqueue_mail, render, shanghai
from .shop import Shop
from database import write_transaction

MIN_PASSWORD = 10
ISSUER = "Learning Buddy Pay"

# argon2id at RFC 9106's low-memory profile (argon2-cffi's defaults, spelled out): t=3, m=64 MiB, p=4.
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)


class Throttled(Exception):
    """Too many sign-in attempts; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


def normalise_email(email: str) -> str:
    """Return the address as accounts are keyed: trimmed and lower-case."""
    return email.strip().lower()


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    return _hasher.hash(password)


@functools.lru_cache(maxsize=1)
def _dummy() -> str:
    return _hasher.hash("no such account: spend the same time as for a real one")


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Check a password; an unknown account is checked against a dummy hash so timing tells nothing."""
    try:
        return _hasher.verify(stored_hash or _dummy(), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def create_admin(shop: Shop, email: str, password: str, *, actor: str = "cli") -> AdminUser:
    """Create an admin account, or set a new password (ending every session) for an existing one."""
    email = normalise_email(email)
    if not is_email_address(email):
        raise BillingError("bad_request", "not an e-mail address")
    if len(password) < MIN_PASSWORD:
        raise BillingError("bad_request", f"the password needs at least {MIN_PASSWORD} characters")
    digest = hash_password(password)
    now = shop.now()
    with write_transaction():
        user = AdminUser.get_or_none(AdminUser.email == email)
        if user is None:
            user = AdminUser.create(email=email, password_hash=digest, created_at=now)
            audit.record("admin.created", at=now, actor=actor, detail={"admin": email})
        else:
            AdminUser.update(password_hash=digest, session_epoch=AdminUser.session_epoch + 1).where(
                AdminUser.id == user.id).execute()
            audit.record("admin.password_changed", at=now, actor=actor, detail={"admin": email})
    return AdminUser.get_by_id(user.id)


def enrol_totp(shop: Shop, email: str, *, actor: str = "cli") -> str:
    """Give the account a fresh TOTP secret and return its ``otpauth://`` enrolment URI."""
    user = AdminUser.get_or_none(AdminUser.email == normalise_email(email))
    if user is None:
        raise BillingError("not_found", "no admin with that e-mail")
    secret = pyotp.random_base32()
    now = shop.now()
    with write_transaction():
        AdminUser.update(totp_secret=secret, totp_last_step=0,
                         session_epoch=AdminUser.session_epoch + 1).where(AdminUser.id == user.id).execute()
        audit.record("admin.totp_enrolled", at=now, actor=actor, detail={"admin": user.email})
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def sign_in_limits(email: str, address: str | None, device: str | None = None) -> list[tuple[str, limits.Rule]]:
    """The limits one sign-in attempt counts against.

    A browser that signed in to this account before (``device``, from its signed cookie) counts
    only against itself, so failures elsewhere cannot lock the creator out (THREATS #65). Any other
    attempt counts against the account from its address, the address, and every unknown browser
    of the account together (slowing guesses spread over many addresses).
    """
    account = normalise_email(email)[:254]
    if device:
        return [(limits.key("sign-in-device", device[:64]), limits.SIGN_IN_PER_ACCOUNT)]
    where = (limits.client(address) or "unknown")[:64]
    return [(limits.key("sign-in-account-ip", account, where), limits.SIGN_IN_PER_ACCOUNT),
            (limits.key("sign-in-ip", where), limits.SIGN_IN_PER_CLIENT),
            (limits.key("sign-in-account", account), limits.SIGN_IN_UNKNOWN_DEVICES)]


def take_attempt(shop: Shop, email: str, address: str | None, device: str | None = None) -> None:
    """Spend one sign-in attempt from each of its limits, or raise ``Throttled``."""
    with write_transaction():
        # Every limit is looked at before any is taken from, so a refused attempt costs nothing.
        wait = limits.take_all(sign_in_limits(email, address, device), shop.now())
    if wait > 0:
        raise Throttled(limits.retry_after(wait))


def forgive_account(email: str, address: str | None, device: str | None) -> None:
    """Refill this browser's and this address's limits for the account after a complete sign-in."""
    # This browser's own limit and the account's from this address; never the address's or the
    # unknown browsers' limits, which others' failures fill.
    mine = [sign_in_limits(email, address, None)[0][0]]
    if device:
        mine.append(sign_in_limits(email, address, device)[0][0])
    with write_transaction():
        for key in mine:
            limits.forgive(key)


def check_password(shop: Shop, email: str, password: str, address: str | None,
                   device: str | None = None) -> AdminUser | None:
    """Return the account when the password is right; the throttle is consulted before any hashing."""
    take_attempt(shop, email, address, device)
    user = AdminUser.get_or_none(AdminUser.email == normalise_email(email)[:254])
    if not password_matches(user.password_hash if user else None, password):
        return None
    if user is not None and _hasher.check_needs_rehash(user.password_hash):
        with write_transaction():
            AdminUser.update(password_hash=hash_password(password)).where(AdminUser.id == user.id).execute()
    return user


def check_totp(shop: Shop, user: AdminUser, code: str, address: str | None, device: str | None = None) -> bool:
    """Accept a TOTP code once (the step before or after counts too), under the same throttle."""
    take_attempt(shop, user.email, address, device)
    code = code.strip().replace(" ", "")
    if not user.totp_secret or not re.fullmatch(r"\d{6}", code):
        return False
    totp = pyotp.TOTP(user.totp_secret)
    now = shop.now()
    step = int(now.timestamp()) // totp.interval
    for candidate in (step - 1, step, step + 1):
        if candidate > user.totp_last_step and pyotp.utils.strings_equal(totp.generate_otp(candidate), code):
            with write_transaction():
                used = AdminUser.update(totp_last_step=candidate).where(
                    (AdminUser.id == user.id) & (AdminUser.totp_last_step < candidate)).execute()
            return used == 1
    return False


def signed_in(shop: Shop, user: AdminUser, address: str | None, device: str | None = None) -> None:
    """Record a completed sign-in."""
    now = shop.now()
    forgive_account(user.email, address, device)
    with write_transaction():
        AdminUser.update(last_login_at=now).where(AdminUser.id == user.id).execute()
        audit.record("admin.signed_in", at=now, actor="admin:" + user.email, ip=address)


def sign_out_everywhere(shop: Shop, user: AdminUser, address: str | None) -> None:
    """End every session of the account by moving its epoch on."""
    now = shop.now()
    with write_transaction():
        AdminUser.update(session_epoch=AdminUser.session_epoch + 1).where(AdminUser.id == user.id).execute()
        audit.record("admin.signed_out", at=now, actor="admin:" + user.email, ip=address)


def admin_by_id(user_id: int) -> AdminUser | None:
    """The console account with this id, or None."""
    return AdminUser.get_or_none(AdminUser.id == user_id)


# --- the way back in: a mailed link that makes a browser known ----------------------------------

LINK_LIFETIME = dt.timedelta(minutes=15)
# Why a link is refused, and the HTTP status that says so.
LINK_REFUSALS = {"unknown": 404, "used": 410, "expired": 410, "wrong_browser": 403}


class LinkRefused(Exception):
    """A sign-in link that cannot be used: unknown, used, expired, or opened in another browser."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = LINK_REFUSALS[reason]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def request_sign_in_link(shop: Shop, email: str, address: str | None, browser: str, link_base: str) -> bool:
    """Mail a one-time link that makes the asking browser a known device, when ``email`` is an admin's.

    The way back in when guesses from many addresses have closed the account to unknown browsers
    (SIGN_IN_UNKNOWN_DEVICES): whoever reads the admin's mail can make *this* browser known, and
    a known browser signs in against its own limit. The link works once, for 15 minutes, only in
    the browser holding ``browser`` (a random cookie given when it asked), and it signs nobody in:
    the password (and TOTP) are still asked. The answer is the same for any address, so it tells
    nobody which addresses are admins'. Returns whether a mail was queued; raises ``Throttled``.
    """
    account = normalise_email(email)[:254]
    where = (limits.client(address) or "unknown")[:64]
    now = shop.now()
    with write_transaction():
        wait = limits.take_all([(limits.key("sign-in-link", account), limits.SIGN_IN_LINKS_PER_ACCOUNT),
                                (limits.key("sign-in-link-ip", where), limits.SIGN_IN_LINKS_PER_CLIENT)], now)
        user = AdminUser.get_or_none(AdminUser.email == account) if wait <= 0 else None
        if wait <= 0:
            audit.record("admin.link_requested", at=now, actor="anonymous", ip=address,
                         detail={"admin": account, "known": user is not None})
        if user is not None:
            token = secrets.token_urlsafe(32)
            expires = now + LINK_LIFETIME
            AdminSignInLink.create(admin=user, token_hash=_digest(token), browser_hash=_digest(browser),
                                   created_at=now, expires_at=expires)
            text, html = render("sign_in_link", link=link_base + token, until=shanghai(expires),
                                address=address or "?")
            enqueue_mail(to=user.email, subject="让这个浏览器可以登录 · Let this browser sign in (Learning Buddy Pay)",
                         text=text, html=html, kind="sign_in_link", now=now)
    if wait > 0:
        raise Throttled(limits.retry_after(wait))
    return user is not None


def use_sign_in_link(shop: Shop, token: str, browser: str | None, address: str | None) -> AdminUser:
    """Spend a sign-in link from the browser that asked for it; return its admin or raise ``LinkRefused``.

    Every refusal is audited; a link opened in another browser is not spent, so the creator can
    still copy it into the right one.
    """
    now = shop.now()
    reason = None
    with write_transaction():
        link = AdminSignInLink.get_or_none(AdminSignInLink.token_hash == _digest(token)) if 0 < len(token) <= 128 \
            else None
        if link is None:
            reason = "unknown"
        elif link.used_at is not None:
            reason = "used"
        elif link.expires_at <= now:
            reason = "expired"
        elif not browser or not hmac.compare_digest(link.browser_hash, _digest(browser)):
            reason = "wrong_browser"
        elif not AdminSignInLink.update(used_at=now).where(
                (AdminSignInLink.id == link.id) & AdminSignInLink.used_at.is_null()).execute():
            reason = "used"  # spent by a request racing this one
        user = AdminUser.get_by_id(link.admin_id) if link is not None else None
        if reason is not None:
            audit.record("admin.link_refused", at=now, actor="anonymous", ip=address,
                         detail={"reason": reason, "admin": user.email if user else None})
        else:
            assert user is not None
            audit.record("admin.browser_trusted", at=now, actor="admin:" + user.email, ip=address,
                         detail={"link": link.id if link else None})
    if reason is not None:
        raise LinkRefused(reason)
    assert user is not None
    return user
