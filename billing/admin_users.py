"""The creator's accounts: argon2id passwords, a sign-in throttle shared by all workers, and TOTP."""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from models import AdminUser, LoginBucket

from . import audit
from .errors import BillingError
from .shop import Shop
from database import write_transaction

ADMIN_EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[^@\s<>\"']{1,189}$")
MIN_PASSWORD = 10
ISSUER = "Learning Buddy Pay"

# argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile: t=3, m=64 MiB, p=4).
_hasher = PasswordHasher()


@dataclass(frozen=True)
class BucketRule:
    """A bucket of ``capacity`` attempts that refills at one attempt every ``refill_seconds``."""

    capacity: int
    refill_seconds: float


# One account from one address, or from one known browser (a device that signed in before).
ACCOUNT_RULE = BucketRule(capacity=10, refill_seconds=60)
ADDRESS_RULE = BucketRule(capacity=30, refill_seconds=20)
# Every unknown browser of one account together: slows guessing spread over many addresses, and
# locks out only browsers that never signed in, never the creator's own (THREATS #65).
UNKNOWN_DEVICES_RULE = BucketRule(capacity=50, refill_seconds=30)


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
    if len(email) > 254 or not ADMIN_EMAIL.match(email):
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


def _take(key: str, rule: BucketRule, now: dt.datetime) -> float:
    """Take one token from a bucket; return 0 when taken, else seconds until one is back."""
    bucket = LoginBucket.get_or_none(LoginBucket.key == key)
    tokens = float(rule.capacity)
    if bucket is not None:
        elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
        tokens = min(rule.capacity, bucket.tokens + elapsed / rule.refill_seconds)
    if tokens < 1:
        return (1 - tokens) * rule.refill_seconds
    LoginBucket.insert(key=key, tokens=tokens - 1, updated_at=now).on_conflict(
        conflict_target=[LoginBucket.key],
        update={LoginBucket.tokens: tokens - 1, LoginBucket.updated_at: now}).execute()
    return 0.0


def _attempt_keys(email: str, address: str | None, device: str | None) -> list[tuple[str, BucketRule]]:
    """The buckets one attempt spends: a known device's own, or those of the address and the account."""
    account = normalise_email(email)[:254]
    if device:
        return [("device:" + device[:64], ACCOUNT_RULE)]
    where = (address or "unknown")[:64]
    return [("account-ip:" + account + "|" + where, ACCOUNT_RULE), ("ip:" + where, ADDRESS_RULE),
            ("account:" + account, UNKNOWN_DEVICES_RULE)]


def take_attempt(shop: Shop, email: str, address: str | None, device: str | None = None) -> None:
    """Spend one sign-in attempt from these buckets, or raise ``Throttled``.

    ``device`` is the id of a browser that signed in to this very account before (the web layer
    checks its signed cookie): its attempts count only against itself, so failures elsewhere
    cannot lock it out.
    """
    now = shop.now()
    keys = _attempt_keys(email, address, device)
    with write_transaction():
        # Look at both buckets before taking from either, so a refused attempt costs nothing.
        waits = [_wait(key, rule, now) for key, rule in keys]
        if max(waits) > 0:
            raise Throttled(max(1, math.ceil(max(waits))))
        for key, rule in keys:
            _take(key, rule, now)


def _wait(key: str, rule: BucketRule, now: dt.datetime) -> float:
    bucket = LoginBucket.get_or_none(LoginBucket.key == key)
    if bucket is None:
        return 0.0
    tokens = min(rule.capacity, bucket.tokens + max(0.0, (now - bucket.updated_at).total_seconds())
                 / rule.refill_seconds)
    return 0.0 if tokens >= 1 else (1 - tokens) * rule.refill_seconds


def forgive_account(email: str, address: str | None, device: str | None) -> None:
    """Refill the buckets of this browser and address for the account after a complete sign-in."""
    keys = [key for key, _ in _attempt_keys(email, address, device) + _attempt_keys(email, address, None)
            if not key.startswith(("ip:", "account:"))]
    with write_transaction():
        LoginBucket.delete().where(LoginBucket.key.in_(keys)).execute()


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
