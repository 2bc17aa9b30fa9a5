"""Honest money: sandbox orders never count as live revenue, a live start refuses them unless archived,
and the dashboard's funnel counts exactly the orders a test plants."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FakeClock, Keys, Sandbox, Shop, start_shop
from servers import sandbox_mode_server
from test_admin import EMAIL, PASSWORD, Console, paid_order, shop_of

import models
from billing.admin_users import create_admin
from settings import ConfigError

UTC = dt.timezone.utc


def sandbox_sale(base: str) -> dict[str, Any]:
    """Buy the demo course in a sandbox-mode server and pay on its simulated phone."""
    order = requests.post(base + "/api/v1/orders", json={"course_id": "cpp-primer-5th"}, timeout=15).json()
    paid = requests.post(f"{base}/sandbox/control/orders/{order['out_trade_no']}/pay", json={"result": "success"},
                         timeout=15)
    assert paid.ok, paid.text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        view = requests.get(f"{base}/api/v1/orders/{order['order_id']}", timeout=15,
                            headers={"Authorization": "Bearer " + order["order_token"]}).json()
        if view["status"] == "fulfilled":
            return view
        time.sleep(0.1)
    raise AssertionError(f"the sandbox order was never fulfilled: {view}")


def signed_in(shop: Shop) -> Console:
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    with models.db.connection_context():
        create_admin(shop_of(shop), EMAIL, PASSWORD)
    console = Console(shop)
    assert console.login().status_code == 303
    return console


def test_a_sandbox_database_switched_to_live_never_counts_its_sandbox_orders(
        tmp_path: Path, keys: Keys, sandbox: Sandbox, clock: FakeClock) -> None:
    folder = tmp_path / "was-sandbox"
    folder.mkdir()
    with sandbox_mode_server(folder) as server:
        played = [sandbox_sale(server.base) for _ in range(2)]  # ¥198 of play money
        page = requests.get(server.base + "/sandbox/mail", timeout=15)
        assert page.status_code == 200 and "Sandbox mode" in page.text
    database = f"sqlite:///{folder / 'instance' / 'lbpay.db'}"

    # Live mode on the same database: refused, naming the way out.
    with pytest.raises(ConfigError, match="LBPAY_ARCHIVE_SANDBOX_ORDERS") as refused:
        start_shop(tmp_path, keys, sandbox, clock, DATABASE_URL=database)
    assert "2 sandbox order(s)" in str(refused.value)

    # Told to archive them: it starts, and says so in the audit trail.
    shop = start_shop(tmp_path, keys, sandbox, clock, DATABASE_URL=database, ARCHIVE_SANDBOX_ORDERS="on")
    try:
        with models.db.connection_context():
            archived = models.AuditEvent.select().where(models.AuditEvent.action == "sandbox.archived").get()
            assert json.loads(archived.detail) == {"orders": 2, "up_to_order_id": 2}
            assert models.Order.select().where(models.Order.sandbox == True).count() == 2  # noqa: E712
        console = signed_in(shop)
        dashboard = console.page("/admin/")
        assert "Sandbox mode" not in dashboard
        assert re.search(r'class="big net">¥0\.00<', dashboard), "sandbox money shown as live revenue"
        real = paid_order(shop)
        dashboard = console.page("/admin/")
        assert dashboard.count('class="big net">¥99.00<') == 3  # today, 7 days, 30 days: the live ¥99 only
        rows = list(csv.reader(io.StringIO(console.get("/admin/export/orders.csv").content.decode("utf-8-sig"))))
        ids = {row[1] for row in rows[1:]}
        assert real["order_id"] in ids and not ids & {p["order_id"] for p in played}
        # The sandbox orders are still there, marked, for whoever looks them up.
        found = console.page(f"/admin/orders/{played[0]['order_id']}")
        assert "沙箱 sandbox" in found
        # /sandbox/mail does not exist in live mode.
        assert requests.get(shop.url + "/sandbox/mail", timeout=15).status_code == 404
    finally:
        shop.server.stop()
    # Archived once is enough: the next live start needs no setting.
    (tmp_path / "again").mkdir()
    again = start_shop(tmp_path / "again", keys, sandbox, clock, DATABASE_URL=database)
    again.server.stop()


def _funnel_rows(page: str) -> dict[tuple[str, str], tuple[int, ...]]:
    rows = {}
    for day, course, body in re.findall(r'<tr class="funnel-row" data-day="([^"]+)" data-course="([^"]+)">(.*?)</tr>',
                                        page, re.S):
        cells = [int(re.search(rf'class="num {name}"[^>]*>(\d+)<', body).group(1))  # type: ignore[union-attr]
                 for name in ("created", "paid", "licensed", "cancelled", "expired")]
        rows[(day, course)] = tuple(cells)
    return rows


def test_the_funnel_counts_the_orders_the_test_planted(shop: Shop) -> None:
    today = shop.clock().astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    # Yesterday (Asia/Shanghai): two orders, one paid, one cancelled (moved back a day once made).
    earlier = [paid_order(shop), shop.order()]
    assert shop.post(f"/api/v1/orders/{earlier[1]['order_id']}/cancel", {}, token=earlier[1]["order_token"]).ok
    with models.db.connection_context():
        for placed in earlier:
            row = models.Order.get(models.Order.public_id == placed["order_id"])
            models.Order.update(created_at=row.created_at - dt.timedelta(days=1)).where(
                models.Order.id == row.id).execute()
    # Today: three paid C++, one expired C++, one pending and one paid Rust.
    for _ in range(3):
        paid_order(shop)
    expired = shop.order()
    with models.db.connection_context():  # planted: the reconcile job's doing, without its waiting
        models.Order.update(status="closed", close_reason="expired", closed_at=shop.clock()).where(
            models.Order.public_id == expired["order_id"]).execute()
    shop.order("rust-monthly")
    paid_order(shop, course_id="rust-monthly")
    console = signed_in(shop)
    assert console.post("/admin/comp", {"course": "cpp-primer-5th", "reason": "friend"}).status_code == 303  # not a sale

    page = console.page("/admin/")
    yesterday = today - dt.timedelta(days=1)
    assert _funnel_rows(page) == {
        (str(today), "cpp-primer-5th"): (4, 3, 3, 0, 1),
        (str(today), "rust-monthly"): (2, 1, 1, 0, 0),
        (str(yesterday), "cpp-primer-5th"): (2, 1, 1, 1, 0),
    }
    total = re.search(r'<tr class="funnel-total">(.*?)</tr>', page, re.S)
    assert total is not None
    assert [int(n) for n in re.findall(r"<b>(\d+)</b>", total.group(1))] == [8, 5, 5, 1, 1]
    assert "63%" in total.group(1)  # 5 paid of 8
