"""The dashboard's daily figures (billing.rollup) always equal a recount of the orders themselves.

A sandbox-mode server sells first on the database, then a live shop on the same database pays,
refunds (partly and fully, on an order moved to the day before), cancels, lets an order expire and
comps a license; the ``rollup`` job runs in between. After each step, what the dashboard reads and
what the table stores must equal a plain count over every order, license and refund row.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from conftest import MODELS_BINDING, FakeClock, Keys, LiveServer, Sandbox, database_url_for, start_shop
from servers import free_port
from werkzeug.serving import make_server
from test_admin import paid_order
from test_refunds import refund, wait_for_refund
from test_sandbox_books import sandbox_sale, signed_in

import models
from app import create_app
from billing import reports, rollup
from billing.courses import save_course
from operations.scheduler import holder_id, run_job

SHANGHAI = ZoneInfo("Asia/Shanghai")
COUNTS = ("paid_fen", "refunded_fen", "created", "paid", "licensed", "cancelled", "expired", "now_pending",
          "now_paid", "now_fulfilled", "now_partially_refunded", "now_refunded", "now_closed")


def counted() -> dict[tuple[dt.date, str, bool], dict[str, int]]:
    """Every figure counted the plain way: one pass over all orders, licenses and refunds."""
    out: dict[tuple[dt.date, str, bool], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    licensed = {row.order_id for row in models.License.select(models.License.order)}
    for order in models.Order.select():
        created = out[(order.created_at.astimezone(SHANGHAI).date(), order.course_id, order.sandbox)]
        created["now_" + order.status] += 1
        if not order.out_trade_no.startswith("COMP"):
            created["created"] += 1
            created["paid"] += order.paid_at is not None
            created["licensed"] += order.id in licensed
            created["cancelled"] += order.close_reason == "cancelled"
            created["expired"] += order.close_reason == "expired"
        if order.paid_at is not None:
            out[(order.paid_at.astimezone(SHANGHAI).date(), order.course_id, order.sandbox)]["paid_fen"] += \
                order.amount_fen
    for back in models.Refund.select(models.Refund, models.Order).join(models.Order).where(
            models.Refund.status == "SUCCESS"):
        key = (back.settled_at.astimezone(SHANGHAI).date(), back.order.course_id, back.order.sandbox)
        out[key]["refunded_fen"] += back.amount_fen
    return dict(out)


def shown(sandbox: bool, first: dt.date, last: dt.date) -> dict[tuple[dt.date, str, bool], dict[str, int]]:
    """What the dashboard reads for one book: the table, with the days touched since the mark recounted."""
    kept = rollup.figures(first, last, sandbox)
    return {(day, course, sandbox): counts for (day, course), counts in kept.rows.items()}


def same_as_counted(today: dt.date) -> None:
    """The dashboard's figures and status totals (both books) equal the plain count."""
    truth = counted()
    first = today - dt.timedelta(days=29)
    for book in (False, True):
        expected = {k: v for k, v in truth.items() if k[2] == book and first <= k[0] <= today}
        assert shown(book, first, today) == expected, book
        totals = {s: sum(v[f"now_{s}"] for k, v in truth.items() if k[2] == book) for s in rollup.STATUSES}
        assert rollup.figures(first, today, book).by_status == totals, book


def stored_as_counted() -> None:
    assert rollup.stored_rows() == counted()


class ServedAt(LiveServer):
    """Our app on a loopback port chosen before it was built (sandbox mode delivers to its public URL)."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.uses_models = app, True
        self.server = make_server("127.0.0.1", port, self._dispatch, threaded=True)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()


def sandbox_mode_sales(folder: Path, database: str, count: int) -> list[dict[str, Any]]:
    """Sales on the shop in sandbox mode (its embedded simulator), into the given database."""
    port = free_port()
    with MODELS_BINDING.command():
        app = create_app({"INSTANCE_PATH": str(folder), "DATABASE_URL": database, "SCHEDULER": "off",
                          "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
        with models.db.connection_context():
            models.create_tables()
            save_course(app.extensions["lbpay.shop"], course_id="cpp-primer-5th", title="C++ Primer 第5版",
                        price_fen=9900)
    server = ServedAt(app, port)
    try:
        return [sandbox_sale(server.url) for _ in range(count)]
    finally:
        server.stop()


def run_rollup(shop: Any) -> dict[str, Any]:
    with models.db.connection_context():
        return run_job(shop.app.extensions["lbpay.shop"], "rollup", holder_id())


def test_the_daily_figures_equal_a_recount_through_payments_refunds_and_sandbox_orders(
        tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock) -> None:
    database = database_url_for(tmp_path)
    played = sandbox_mode_sales(tmp_path / "sandbox-first", database, 2)  # ¥198 of play money, never revenue
    shop = start_shop(tmp_path, keys, sandbox, clock, DATABASE_URL=database, ARCHIVE_SANDBOX_ORDERS="on")
    try:
        today = clock().astimezone(SHANGHAI).date()
        with models.db.connection_context():
            # Never counted yet (no job run; the tables came from the models): the dashboard counts it all.
            assert rollup._mark() is None and rollup.stored_rows() == {}
            same_as_counted(today)
        assert "rebuilt" in run_rollup(shop)
        with models.db.connection_context():
            stored_as_counted()
        console = signed_in(shop)

        # Day one: an order paid "yesterday" (moved back before the job ever saw it), sales, a cancel.
        early = paid_order(shop)
        with models.db.connection_context():
            row = models.Order.get(models.Order.public_id == early["order_id"])
            models.Order.update(created_at=row.created_at - dt.timedelta(days=1)).where(
                models.Order.id == row.id).execute()
        sold = [paid_order(shop), paid_order(shop, course_id="rust-monthly")]
        cancelled = shop.order()
        assert shop.post(f"/api/v1/orders/{cancelled['order_id']}/cancel", {}, token=cancelled["order_token"]).ok
        waiting = shop.order("rust-monthly")
        with models.db.connection_context():
            same_as_counted(today)  # nothing stored for these yet: the dashboard recounts them
        assert run_rollup(shop)["days"] >= 2
        with models.db.connection_context():
            stored_as_counted()
            same_as_counted(today)
            assert rollup.touched_days(rollup._mark() or 0)[0] == set()

        # Then: a partial and a full refund (the full one on yesterday's order), a comp, an expiry.
        assert refund(console, sold[0], "30.00").status_code == 303
        wait_for_refund(sold[0], "SUCCESS")
        assert refund(console, early, "99.00").status_code == 303
        wait_for_refund(early, "SUCCESS")
        assert shop.wait_for_status(early, "refunded")["status"] == "refunded"
        assert console.post("/admin/comp", {"course": "cpp-primer-5th", "reason": "friend"}).status_code == 303
        clock.advance(31 * 60)
        with models.db.connection_context():
            assert run_job(shop.app.extensions["lbpay.shop"], "reconcile", holder_id())["closed"] == 1
        today = clock().astimezone(SHANGHAI).date()
        with models.db.connection_context():
            same_as_counted(today)
        summary = run_rollup(shop)
        assert summary["days"] >= 2, summary  # the refund's day and yesterday (where the order was created)
        with models.db.connection_context():
            stored_as_counted()
            same_as_counted(today)
            live = rollup.figures(today - dt.timedelta(days=29), today, False)
            assert live.by_status["refunded"] == 1 and live.by_status["partially_refunded"] == 1
            assert live.by_status["closed"] == 2 and live.by_status["pending"] == 0  # cancelled + expired
            assert rollup.figures(today, today, True).by_status["fulfilled"] == len(played)
            # A rebuild from scratch finds exactly what the job kept.
            kept = rollup.stored_rows()
            rollup.rebuild(clock())
            assert rollup.stored_rows() == kept

        # The page: live money only (¥99 + ¥29 + ¥99 paid, ¥129 refunded), never the sandbox's ¥198.
        assert console.login().status_code == 303  # the half hour the clock moved ended the session
        page = console.page("/admin/")
        with models.db.connection_context():
            paid = sum(o.amount_fen for o in models.Order.select().where(
                models.Order.paid_at.is_null(False) & (models.Order.sandbox == False)))  # noqa: E712
            board = reports.dashboard(clock())
        assert paid == 9900 + 9900 + 2900
        month = board["sales"]["30 days"]
        assert (month["paid_fen"], month["refunded_fen"]) == (paid, 3000 + 9900)
        assert month["net_fen"] == paid - 3000 - 9900 and month["previous_net_fen"] == 0
        assert re.search(r"¥98\.00", page) and re.search(r"¥227\.00", page), "the month's live net, then gross"
        assert waiting["order_id"]
    finally:
        shop.server.stop()
