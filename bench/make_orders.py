"""Fill a SQLite database with many orders quickly, shaped like a year of a busy shop's sales.

Usage: python bench/make_orders.py DB --orders 1000000 --secret-key KEY [--no-audit]

About 62 % of orders expired or were cancelled unpaid, 36 % were paid and licensed, 2 % of
those refunded, a few hundred are still pending; each buyer places about two orders and 60 %
gave an e-mail address. Every order gets its audit events in one valid hash chain, so the
dashboard's chain check walks a realistic trail. QR SVGs of closed orders are not kept (the
retention job clears them), notifications are not generated (nothing measured reads them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from billing.audit import GENESIS, _event_hash  # noqa: E402
from billing.shop import Shop, hash_token  # noqa: E402
from peewee import SqliteDatabase  # noqa: E402

UTC = dt.timezone.utc
COURSES = [("cpp-primer-5th", "C++ Primer 第5版", 9900, "one_time", None),
           ("rust-monthly", "Rust 每月一课", 2900, "subscription", 30),
           ("python-basics", "Python 入门", 4900, "one_time", None),
           ("go-in-action", "Go 语言实战", 6900, "one_time", None),
           ("algorithms-101", "算法 101", 19900, "one_time", 365)]
WEIGHTS = [40, 20, 20, 12, 8]
LICENSE_TEXT = "LB1." + "x" * 560  # a signed license is about this long
CHUNK = 20000


def token_secret(secret_key: str) -> bytes:
    """The bearer-token secret app.py derives from LBPAY_SECRET_KEY."""
    return hashlib.sha256(b"lbpay bearer tokens\0" + secret_key.encode()).digest()


def _text(value: dt.datetime | None) -> str | None:
    """A UTC datetime as Peewee stores it in SQLite: naive, with microseconds."""
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _defaults(model: Any, given: list[str]) -> dict[str, Any]:
    """Python-side defaults of the columns this script does not fill (columns other engineers add)."""
    out = {}
    for f in model._meta.sorted_fields:
        if f.name in given or f.name == "id" or f.column_name in given:
            continue
        value = f.default() if callable(f.default) else f.default
        out[f.column_name] = f.db_value(value)
    return out


def _insert(conn: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    marks = ",".join("?" * len(columns))
    names = ",".join(f'"{c}"' for c in columns)
    conn.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)


def generate(path: Path, orders: int, secret_key: str, audit: bool = True, seed: int = 7,
             now: dt.datetime | None = None) -> dict[str, Any]:
    """Create the tables and fill them; returns counts and a sample of orders to query."""
    started = time.perf_counter()
    now = now or dt.datetime.now(UTC)
    rnd = random.Random(seed)
    models.db.initialize(SqliteDatabase(str(path), pragmas={"journal_mode": "wal", "foreign_keys": 1}))
    models.db.connect(reuse_if_open=True)
    try:
        import migrations  # the schema as `lbpay init` makes it
    except ImportError:
        models.create_tables()
    else:
        migrations.migrate()
    models.db.close()
    shop = Shop(wechat=None, verifier=None, apiv3_keys=[], mchid="", appid="",  # type: ignore[arg-type]
                license_keys=None, notify_url="", token_secret=token_secret(secret_key))  # type: ignore[arg-type]

    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=off")
    conn.execute("PRAGMA cache_size=-200000")
    conn.execute("BEGIN")
    for cid, title, price, plan, days in COURSES:
        conn.execute('INSERT OR IGNORE INTO "course" (id, title, price_fen, currency, plan, period_days, active, '
                     'created_at) VALUES (?,?,?,?,?,?,1,?)',
                     (cid, title, price, "CNY", plan, days, _text(now - dt.timedelta(days=400))))
    conn.execute("COMMIT")

    order_cols = ["public_id", "out_trade_no", "course_id", "buyer_id", "email", "description", "amount_fen",
                  "currency", "status", "flag", "flag_detail", "token_hash", "code_url", "qr_svg",
                  "transaction_id", "trade_state", "payer_openid", "bank_type", "success_time", "created_at",
                  "expires_at", "paid_at", "closed_at", "close_reason", "last_queried_at", "idempotency_key"]
    order_extra = _defaults(models.Order, order_cols)
    order_cols_all = order_cols + list(order_extra)
    license_cols = ["license_id", "order_id", "course_id", "buyer_id", "key", "kid", "plan", "issued_at",
                    "expires_at", "revoked_at", "revoke_reason"]
    license_extra = _defaults(models.License, license_cols)
    buyer_cols = ["public_id", "token_hash", "email", "created_at"]
    buyer_extra = _defaults(models.Buyer, buyer_cols)
    audit_cols = ["at", "actor", "action", "order_id", "detail", "ip", "prev_hash", "hash"]

    first_order = (conn.execute('SELECT COALESCE(MAX(id), 0) FROM "order"').fetchone()[0]) + 1
    first_buyer = (conn.execute('SELECT COALESCE(MAX(id), 0) FROM "buyer"').fetchone()[0]) + 1
    table_audit = models.AuditEvent._meta.table_name
    last = conn.execute(f'SELECT hash FROM "{table_audit}" ORDER BY id DESC LIMIT 1').fetchone()
    prev_hash = last[0] if last else GENESIS

    span = dt.timedelta(days=365)
    start = now - span
    step = span / max(orders, 1)
    buyers = 0
    buyer_email: dict[int, str | None] = {}
    sample: dict[str, list[Any]] = {"fulfilled": [], "closed": [], "pending": [], "transaction_ids": [],
                                    "emails": []}
    counts = {"orders": 0, "licenses": 0, "audit_events": 0, "buyers": 0}
    order_rows: list[tuple[Any, ...]] = []
    license_rows: list[tuple[Any, ...]] = []
    buyer_rows: list[tuple[Any, ...]] = []
    audit_rows: list[tuple[Any, ...]] = []

    def event(at: dt.datetime, actor: str, action: str, order_id: int, detail: dict[str, Any]) -> None:
        nonlocal prev_hash
        text = json.dumps(detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        digest = _event_hash(prev_hash, at, actor, action, order_id, text, None)
        audit_rows.append((_text(at), actor, action, order_id, text, None, prev_hash, digest))
        prev_hash = digest

    def flush() -> None:
        conn.execute("BEGIN")
        _insert(conn, "buyer", buyer_cols + list(buyer_extra), buyer_rows)
        _insert(conn, "order", order_cols_all, order_rows)
        _insert(conn, "license", license_cols + list(license_extra), license_rows)
        if audit_rows:
            _insert(conn, table_audit, audit_cols, audit_rows)
        conn.execute("COMMIT")
        counts["buyers"] += len(buyer_rows)
        counts["orders"] += len(order_rows)
        counts["licenses"] += len(license_rows)
        counts["audit_events"] += len(audit_rows)
        for rows in (buyer_rows, order_rows, license_rows, audit_rows):
            rows.clear()

    for n in range(orders):
        order_id = first_order + n
        created = start + step * n + dt.timedelta(microseconds=rnd.randrange(1000))
        age = now - created
        # Half the orders come from a buyer who ordered before: one to three orders per buyer.
        if buyers and rnd.random() < 0.5:
            buyer_id = first_buyer + rnd.randrange(max(0, buyers - 2000), buyers)
        else:
            buyer_id = first_buyer + buyers
            buyers += 1
            email = f"learner{buyer_id}@example{buyer_id % 97}.com" if rnd.random() < 0.6 else None
            buyer_email[buyer_id] = email
            public = f"buy_bench{buyer_id:012d}"
            buyer_rows.append((public, hash_token("bt_" + public), email, _text(created), *buyer_extra.values()))
        email = buyer_email.get(buyer_id)
        course = rnd.choices(COURSES, WEIGHTS)[0]
        cid, title, price, plan, days = course
        public_id = f"ord_bench{order_id:013d}"
        out_trade_no = "LB" + created.strftime("%Y%m%d%H%M%S") + f"{order_id:012d}"
        token_hash = hash_token(shop.derive_token("order", public_id))
        expires = created + shop.config.order_ttl
        roll = rnd.random()
        if age < dt.timedelta(minutes=25):
            status = "pending"
        elif roll < 0.58:
            status = "expired"
        elif roll < 0.62:
            status = "cancelled"
        elif roll < 0.637:
            status = "refunded"
        else:
            status = "fulfilled"
        paid = status in ("fulfilled", "refunded")
        paid_at = created + dt.timedelta(seconds=rnd.uniform(5, 300)) if paid else None
        transaction_id = f"4200{order_id:028d}" if paid else None
        closed_at = expires if status == "expired" else (
            created + dt.timedelta(minutes=rnd.uniform(1, 20)) if status == "cancelled" else None)
        flag = "LATE_PAYMENT" if status == "expired" and rnd.random() < 0.001 else None
        order_rows.append((
            public_id, out_trade_no, cid, buyer_id, email, title, price, "CNY",
            "closed" if status in ("expired", "cancelled") else status,
            flag, "paid while closed" if flag else None, token_hash,
            f"weixin://wxpay/bizpayurl?pr=bench{order_id:08d}",
            None, transaction_id, "SUCCESS" if paid else None, "oBench" + str(buyer_id) if paid else None,
            "OTHERS" if paid else None, None, _text(created), _text(expires), _text(paid_at), _text(closed_at),
            status if status in ("expired", "cancelled") else None, None, None, *order_extra.values()))
        if audit:
            event(created, "buyer", "order.created", order_id, {"amount_fen": price, "course": cid})
        if paid and paid_at is not None:
            lic_expires = paid_at + (dt.timedelta(days=days) if days else dt.timedelta(days=36500))
            license_rows.append((f"lic-bench-{order_id:012d}", order_id, cid, buyer_id, LICENSE_TEXT, "k1", plan,
                                 _text(paid_at), _text(lic_expires),
                                 _text(paid_at + dt.timedelta(days=3)) if status == "refunded" else None,
                                 "refunded" if status == "refunded" else None, *license_extra.values()))
            if audit:
                event(paid_at, "wechat", "order.paid", order_id, {"amount_fen": price, "source": "notification",
                                                                  "transaction_id": transaction_id})
                event(paid_at, "system", "license.issued", order_id, {"license": f"lic-bench-{order_id:012d}"})
        elif audit and closed_at is not None:
            event(closed_at, "system" if status == "expired" else "buyer", "order." + status, order_id, {})
        bucket = "fulfilled" if status == "fulfilled" else "closed" if status in ("expired", "cancelled") \
            else status
        if bucket in sample and len(sample[bucket]) < 5000 and rnd.random() < 0.05:
            sample[bucket].append(public_id)
        if status == "pending" and len(sample["pending"]) < 5000:
            sample["pending"].append(public_id)
        if transaction_id and len(sample["transaction_ids"]) < 5000 and rnd.random() < 0.05:
            sample["transaction_ids"].append(transaction_id)
        if email and len(sample["emails"]) < 5000 and rnd.random() < 0.05:
            sample["emails"].append(email)
        if len(order_rows) >= CHUNK:
            flush()
    flush()
    conn.execute("PRAGMA optimize")
    conn.close()
    # The rows went in under the models' feet: count the dashboard's daily figures once, as migration
    # m0011 does for a database that already has orders (without it the dashboard would count them all).
    try:
        from billing import rollup
    except ImportError:
        pass
    else:
        models.db.initialize(SqliteDatabase(str(path), pragmas={"journal_mode": "wal", "foreign_keys": 1}))
        with models.db.connection_context():
            rollup.rebuild(now)
    return {"counts": counts, "seconds": round(time.perf_counter() - started, 1), "sample": sample,
            "bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--secret-key", required=True, help="the LBPAY_SECRET_KEY of the server that will poll")
    parser.add_argument("--no-audit", action="store_true", help="skip the audit events (faster)")
    args = parser.parse_args(argv)
    result = generate(args.database, args.orders, args.secret_key, audit=not args.no_audit)
    print(json.dumps({k: v for k, v in result.items() if k != "sample"}))


if __name__ == "__main__":
    main()
