"""Every rate limit of the service: one rule type, one algorithm, one table shared by all workers.

The algorithm is a token bucket kept as a single number per key (GCRA): ``due``, the moment the
bucket will be full again. A rule lets ``count`` requests through at once and refills evenly over
``seconds``; a request is let through while ``due - now`` stays within the burst. One row per key
in ``RateLimit`` (a double, no counters to reset), so checking costs one primary-key read and
taking one conditional UPSERT that decides and writes at once (atomic on PostgreSQL under READ
COMMITTED as well as on SQLite); a row whose ``due`` has passed means the same as no row and is
deleted by the renewal-reminder job.

The same function decides for the one limit that lives in memory (``LocalBucket``: how often
status polls of this process may ask WeChat), so every limit answers "wait this long" alike.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from peewee import SqliteDatabase

from models import RateLimit, db

from .errors import BillingError
from database import write_transaction

KEY_MAX = 200


@dataclass(frozen=True)
class Rule:
    """At most ``count`` requests at once, refilled evenly over ``seconds`` (``count`` per ``seconds``)."""

    count: int
    seconds: float

    @property
    def step(self) -> float:
        """Seconds one request uses up."""
        return self.seconds / self.count


# --- the table of every limit ------------------------------------------------------------------
# Learners (per client address unless said otherwise).
ORDERS_PER_CLIENT = Rule(10, 60)  # new orders, each one a WeChat call
PENDING_ORDERS_PER_CLIENT = 20  # unpaid, unexpired orders at once (a campus NAT is many learners)
PENDING_ORDERS_PER_BUYER = 5
ORDER_MISSES_PER_CLIENT = Rule(30, 60)  # wrong order ids or tokens; a real extension makes none
STATUS_PER_CLIENT = Rule(120, 60)
REVOCATIONS_PER_CLIENT = Rule(60, 60)
STRUCTURE_PER_CLIENT = Rule(60, 60)  # a course's file tree (/provider/courses/<id>/structure)
RESEND_PER_CLIENT = Rule(10, 600)  # beyond this, 429
RESEND_PER_ADDRESS = Rule(3, 3600)  # per e-mail address; beyond this, silently dropped
# The creator's console: sign-in attempts (a password or a TOTP code).
SIGN_IN_PER_ACCOUNT = Rule(10, 600)
SIGN_IN_PER_CLIENT = Rule(30, 600)
SIGN_IN_UNKNOWN_DEVICES = Rule(50, 1500)  # every browser that never signed in to the account, together
# A mailed link that makes a browser known (the way back in past SIGN_IN_UNKNOWN_DEVICES).
SIGN_IN_LINKS_PER_ACCOUNT = Rule(3, 3600)  # mails to one admin: never a flood in the creator's inbox
SIGN_IN_LINKS_PER_CLIENT = Rule(10, 3600)
# This process's status polls asking WeChat about pending orders (in memory, see LocalBucket).
POLL_QUERIES_PER_PROCESS = Rule(40, 2)


def decide(due: float | None, now: float, rule: Rule) -> tuple[float, float]:
    """The one algorithm: given a key's ``due`` (None: full bucket), return (new due, seconds to wait).

    A wait of 0 means the request goes through and the new due is to be stored; otherwise nothing
    changes and the caller may try again after the wait.
    """
    start = now if due is None or due < now else due
    after = start + rule.step
    wait = after - now - rule.seconds
    return (after, 0.0) if wait <= 1e-9 else (due if due is not None else now, wait)


@functools.lru_cache(maxsize=4096)
def client(address: str | None) -> str | None:
    """The subject every per-address limit counts for a client address: the one place that says who a client is.

    An IPv6 subscriber is handed a whole /64 and may take a new address in it for every request,
    so an IPv6 address counts as its /64; an IPv4-mapped address (``::ffff:a.b.c.d``, what a
    dual-stack socket shows for an IPv4 peer) counts as the IPv4 address it carries. Anything
    that does not parse as an address is counted as given.
    """
    if not address:
        return address
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone (fe80::1%eth0) names no other host
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def for_client(name: str, address: str | None) -> str:
    """The row key of the limit ``name`` for a client address (see ``client``)."""
    return key(name, client(address))


def key(name: str, *parts: str | None) -> str:
    """The row key of one limit for one subject, e.g. ``key("orders", address)``."""
    return ":".join([name, *(p or "-" for p in parts)])[:KEY_MAX]


def _epoch(now: dt.datetime) -> float:
    return now.timestamp()


@functools.cache
def _due_sql(param: str) -> str:
    return f'SELECT "due" FROM "{RateLimit._meta.table_name}" WHERE "key" = {param}'


@functools.cache
def _take_sql(param: str, greatest: str) -> str:
    """One statement that takes a request from a key's bucket if it has one and returns the new due.

    ``decide`` written in SQL (the same float arithmetic, in the same order): no row means a full
    bucket, so the row is made with ``now + step``; else the row is moved on only where ``decide``
    would let the request through, and nothing is returned where it would not. PostgreSQL locks the
    row it updates and evaluates the WHERE against the newest committed version (a worker racing
    for the same key waits for the first to commit, then sees its due), so two transactions under
    READ COMMITTED can never both take the last request, with or without the write lock around.
    """
    table = f'"{RateLimit._meta.table_name}"'
    after = f'{greatest}({table}."due", {param}) + {param}'
    return (f'INSERT INTO {table} ("key", "due") VALUES ({param}, {param}) '
            f'ON CONFLICT ("key") DO UPDATE SET "due" = {after} '
            f'WHERE {after} - {param} - {param} <= 1e-9 RETURNING "due"')


def wait_for(limit_key: str, rule: Rule, now: dt.datetime) -> float:
    """Seconds until ``limit_key`` may make one more request (0: now), without taking it."""
    # On every status poll: one parameterised primary-key read, no ORM query building (a third of a poll).
    row = db.execute_sql(_due_sql(db.obj.param), (limit_key,)).fetchone()
    return decide(None if row is None else float(row[0]), _epoch(now), rule)[1]


def take(limit_key: str, rule: Rule, now: dt.datetime) -> float:
    """Take one request for ``limit_key``; return 0 when taken, else seconds to wait. Call inside a write transaction."""
    at = _epoch(now)
    for _ in range(3):
        if _take_one(limit_key, rule, at):
            return 0.0
        wait = wait_for(limit_key, rule, now)
        if wait > 0:
            return wait
        # The bucket was refilled between the two statements (a sign-in forgiven): take again.
    return rule.step


def _take_one(limit_key: str, rule: Rule, at: float) -> bool:
    """Take one request for ``limit_key`` at ``at`` in one statement; whether it was taken."""
    database = db.obj
    greatest = "MAX" if isinstance(database, SqliteDatabase) else "GREATEST"
    sql = _take_sql(database.param, greatest)
    params = (limit_key, at + rule.step, at, rule.step, at, rule.step, at, rule.seconds)
    return bool(database.execute_sql(sql, params).fetchall())


def take_all(checks: Iterable[tuple[str, Rule]], now: dt.datetime) -> float:
    """Take one request from each key only if every key has one; else take none and return the longest wait.

    Call inside a write transaction. Each key is taken in one statement (``_take_one``), in the order
    of the keys so that two workers never wait for each other's rows crosswise; a key refused undoes
    the takes before it (a savepoint), so a refused attempt costs nothing.
    """
    checks = sorted(checks, key=lambda check: check[0])
    if len(checks) == 1:
        return take(checks[0][0], checks[0][1], now)
    at = _epoch(now)
    with db.atomic() as savepoint:
        if all(_take_one(limit_key, rule, at) for limit_key, rule in checks):
            return 0.0
        savepoint.rollback()
    rows = {row.key: row.due for row in RateLimit.select().where(RateLimit.key.in_([k for k, _ in checks]))}
    return max((decide(rows.get(k), at, rule)[1] for k, rule in checks), default=0.0) or checks[0][1].step


def forgive(limit_key: str) -> None:
    """Fill ``limit_key``'s bucket again (a sign-in that succeeded). Call inside a write transaction."""
    RateLimit.delete().where(RateLimit.key == limit_key).execute()


def forget_idle(now: dt.datetime) -> int:
    """Delete the rows of full buckets (they mean the same as no row); call inside a write transaction."""
    return int(RateLimit.delete().where(RateLimit.due < _epoch(now)).execute())


def retry_after(wait: float) -> int:
    """A wait in whole seconds for a ``Retry-After`` header: rounded up, at least 1."""
    return max(1, math.ceil(wait))


def refused(what: str, wait: float) -> BillingError:
    """The 429 for a refused request, saying when to try again."""
    return BillingError("rate_limited", f"too many requests: {what}", retry_after=retry_after(wait))


def throttle(name: str, address: str | None, rule: Rule, now: dt.datetime) -> None:
    """Count one request of the client at ``address`` against the limit ``name``, or raise ``rate_limited``."""
    with _limit_transaction():
        wait = take(for_client(name, address), rule, now)
    if wait > 0:
        raise refused(name, wait)


def _limit_transaction() -> Any:
    """The transaction of a take on its own: SQLite's writer turn; on PostgreSQL a plain one.

    ``take`` is one atomic statement (its row lock is all it needs), so on PostgreSQL a status
    poll's limit does not queue behind every order and payment for the write lock, and two
    servers' polls only wait for each other when they are the same client.
    """
    if isinstance(db.obj, SqliteDatabase):
        return write_transaction()
    return db.atomic()


def refuse_if_over(name: str, address: str | None, rule: Rule, now: dt.datetime) -> None:
    """Raise ``rate_limited`` while the client at ``address`` is over the limit ``name``, without counting."""
    wait = wait_for(for_client(name, address), rule, now)
    if wait > 0:
        raise refused(name, wait)


class LocalBucket:
    """A limit kept in this process's memory (same rule and algorithm), for budgets that must never write."""

    def __init__(self, rule: Rule, clock: Callable[[], float] = time.monotonic) -> None:
        self.rule = rule
        self.clock = clock
        self.due: float | None = None
        self.lock = threading.Lock()

    def take(self) -> bool:
        """Take one request if the bucket has one."""
        with self.lock:
            due, wait = decide(self.due, self.clock(), self.rule)
            if wait > 0:
                return False
            self.due = due
            return True

