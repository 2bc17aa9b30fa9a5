"""The console's alerts, bill differences, audit trail, customers and search, over real HTTP to the live-mode shop."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from conftest import Shop
from peewee import SqliteDatabase, fn
from test_admin import EMAIL, Console, console, paid_order  # noqa: F401 (the console fixture)

import models
from billing import console as console_search
from billing import daily_bill
from operations.alerts import raise_alert

ACTOR = "admin:" + EMAIL


@pytest.fixture
def shop_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


def plant_difference(shop: Shop, out_trade_no: str, *, day: dt.date = dt.date(2026, 12, 3)) -> int:
    """A bill check that found a payment WeChat took and we never licensed."""
    with models.db.connection_context():
        daily_bill.record(day, [daily_bill.Difference("paid_not_licensed", "paid at WeChat, no license here",
                                                       out_trade_no=out_trade_no, transaction_id="4200000000001",
                                                       wechat_fen=9900)], shop.clock(), lines=1)
        return models.BillDifference.get(models.BillDifference.out_trade_no == out_trade_no).id


def plant_alert(shop: Shop, kind: str = "backup_failed", key: str = "backup_failed:2026-12-05") -> int:
    with models.db.connection_context():
        alert = raise_alert(kind, "The daily backup failed: disk full", now=shop.clock(), key=key, to=None)
        assert alert is not None
        return alert.id


def events(action: str) -> list[models.AuditEvent]:
    with models.db.connection_context():
        return list(models.AuditEvent.select().where(models.AuditEvent.action == action)
                    .order_by(models.AuditEvent.id))


def test_a_planted_difference_and_alert_fill_the_attention_card_and_badge_until_settled(console: Console) -> None:
    order = paid_order(console.shop)
    difference = plant_difference(console.shop, order["out_trade_no"])
    alert = plant_alert(console.shop)

    page = console.page("/admin/")
    assert 'id="attention-count">2<' in page and "Nothing needs you" not in page
    assert "微信已收款，本店未发许可证" in page and "¥99.00" in page
    assert "每日备份失败" in page and 'id="attention-badge"' in page and ">2</span>" in page
    assert "checked=[" not in page

    response = console.post(f"/admin/alerts/{alert}/resolve", {"note": "disk cleaned"})
    assert response.status_code == 303
    page = console.page("/admin/")
    assert 'id="attention-count">1<' in page and "每日备份失败" not in page

    response = console.post(f"/admin/bill-differences/{difference}/resolve", {"note": "license issued by hand"})
    assert response.status_code == 303
    page = console.page("/admin/")
    assert 'id="attention-count">0<' in page and "Nothing needs you" in page
    assert 'id="attention-badge"' not in page

    resolved = events("alert.resolved")
    assert [json.loads(e.detail)["alert"] for e in resolved] == [alert] and resolved[0].actor == ACTOR
    settled = events("bill_difference.resolved")
    assert len(settled) == 1 and settled[0].actor == ACTOR
    with models.db.connection_context():
        assert settled[0].order_id == models.Order.get(models.Order.public_id == order["order_id"]).id
        row = models.BillDifference.get_by_id(difference)
        assert (row.resolved_by, row.resolution) == (ACTOR, "license issued by hand")


def test_an_alert_is_acknowledged_then_resolved_once_each_with_who_and_when(console: Console) -> None:
    alert = plant_alert(console.shop)
    page = console.page("/admin/alerts")
    assert "每日备份失败" in page and 'lang="en">The daily backup failed' in page

    assert console.post(f"/admin/alerts/{alert}/acknowledge").status_code == 303
    assert console.post(f"/admin/alerts/{alert}/acknowledge").status_code == 400
    page = console.page("/admin/alerts")
    assert "处理中" in page and ACTOR in page
    assert console.post(f"/admin/alerts/{alert}/resolve").status_code == 303
    assert console.post(f"/admin/alerts/{alert}/resolve").status_code == 400
    assert console.post("/admin/alerts/999999/resolve").status_code == 404
    assert "每日备份失败" not in console.page("/admin/alerts")
    assert "每日备份失败" in console.page("/admin/alerts?state=resolved")
    with models.db.connection_context():
        row = models.Alert.get_by_id(alert)
        assert row.acknowledged_by == ACTOR and row.resolved_by == ACTOR
        assert row.acknowledged_at is not None and row.resolved_at is not None
    # One event per state change; the refused repeats left none.
    assert len(events("alert.acknowledged")) == 1 and len(events("alert.resolved")) == 1


def test_a_difference_is_settled_only_with_a_note(console: Console) -> None:
    order = paid_order(console.shop)
    difference = plant_difference(console.shop, order["out_trade_no"])
    response = console.post(f"/admin/bill-differences/{difference}/resolve", {"note": "   "})
    assert response.status_code == 400 and "note" in response.text
    response = console.post(f"/admin/bill-differences/{difference}/resolve", {"note": "x" * 301})
    assert response.status_code == 400
    with models.db.connection_context():
        assert models.BillDifference.get_by_id(difference).resolved_at is None
    assert events("bill_difference.resolved") == []
    assert 'data-kind="paid_not_licensed"' in console.page("/admin/alerts")


def test_without_an_alert_email_every_console_page_warns(console: Console) -> None:
    for path in ("/admin/", "/admin/alerts", "/admin/audit", "/admin/customers"):
        assert 'id="no-alert-channel"' in console.page(path), path


@pytest.mark.parametrize("shop_settings", [{"ALERT_EMAIL": "creator@example.com"}], indirect=True)
def test_with_an_alert_email_there_is_no_warning(console: Console, shop_settings: dict[str, Any]) -> None:
    assert 'id="no-alert-channel"' not in console.page("/admin/")


def test_search_finds_an_order_by_the_beginning_of_an_email_or_id_and_by_part_of_an_email(console: Console) -> None:
    learner = paid_order(console.shop, email="Learner1@Example.com")
    other = paid_order(console.shop, email="someone.else@mail.test")
    htmx = {"HX-Request": "true"}  # typing: the list narrows in place, never jumps
    for q in ("learner1", "LEARNER1@ex", learner["order_id"][:10], learner["transaction_id"][:-2],
              learner["out_trade_no"][:-2], "xample.c"):
        page = console.get("/admin/orders", params={"q": q}, headers=htmx).text
        assert learner["order_id"] in page and other["order_id"] not in page, q
    assert other["order_id"] not in console.get("/admin/orders", params={"q": "learner2"}, headers=htmx).text
    # Percent and underscore are plain characters, not patterns.
    assert ">0 orders<" in console.get("/admin/orders", params={"q": "%%%"}, headers=htmx).text.replace(
        '<span class="en">', ">").replace("</span>", "<")
    # A submitted search with one match still jumps to it.
    response = console.get("/admin/orders", params={"q": "learner1"})
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/orders/{learner['order_id']}"

    page = console.page("/admin/customers?q=learner")
    assert "learner1@example.com" in page and "someone.else" not in page
    page = console.page("/admin/customers?q=Rust")
    assert 'id="found-courses"' in page and "rust-monthly" in page


def test_a_customer_page_shows_orders_licenses_totals_and_resends(console: Console) -> None:
    first = paid_order(console.shop, email="Buyer@Example.com")
    second = paid_order(console.shop, course_id="rust-monthly", email="buyer@example.com")
    paid_order(console.shop, email="stranger@example.com")
    page = console.page("/admin/customer?email=BUYER@example.com")
    assert first["order_id"] in page and second["order_id"] in page and "stranger" not in page
    with models.db.connection_context():
        total = sum(o.amount_fen for o in models.Order.select().where(models.Order.email ** "buyer@example.com"))
    assert f'id="paid">¥{total // 100}.{total % 100:02d}<' in page and 'id="order-count">2<' in page
    assert page.count("重发许可证邮件") == 2
    assert console.get("/admin/customer?email=nobody@example.com").status_code == 404

    assert console.post(f"/admin/orders/{first['order_id']}/resend").status_code == 303
    with models.db.connection_context():
        assert models.MailOutbox.select().where((models.MailOutbox.to == "Buyer@Example.com")
                                                & (models.MailOutbox.kind == "resend")).count() == 1


def test_the_audit_page_filters_by_order_actor_kind_and_day_and_says_the_chain_is_whole(console: Console) -> None:
    order = paid_order(console.shop)
    other = paid_order(console.shop)
    alert = plant_alert(console.shop)
    console.post(f"/admin/alerts/{alert}/acknowledge")

    page = console.page("/admin/audit")
    assert "审计记录完整" in page and "The audit trail is whole" in page
    assert "创建订单" in page and 'lang="en">Order created' in page

    page = console.page(f"/admin/audit?order={order['order_id']}")
    assert page.count('class="audit-row"') >= 2 and other["order_id"] not in page
    assert f'href="/admin/orders/{order["order_id"]}"' in page
    assert 'data-action="order.created"' in page and 'data-action="admin.signed_in"' not in page

    page = console.page(f"/admin/audit?actor={ACTOR}")
    assert 'data-action="alert.acknowledged"' in page and 'data-action="order.created"' not in page

    page = console.page("/admin/audit?kind=license")
    assert 'data-action="license.issued"' in page and 'data-action="order.paid"' not in page
    page = console.page("/admin/audit?kind=order.paid")
    assert page.count('data-action="order.paid"') == 2 and 'data-action="order.created"' not in page

    today = console.shop.clock().astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    assert 'data-action="order.paid"' in console.page(f"/admin/audit?since={today}&until={today}")
    assert 'id="no-events"' in console.page("/admin/audit?since=2001-01-01&until=2001-01-02")
    assert 'id="unknown-order"' in console.page("/admin/audit?order=ord_nothing")


def test_the_audit_page_names_a_tampered_event_in_words(console: Console) -> None:
    paid_order(console.shop)
    with models.db.connection_context():
        victim = models.AuditEvent.select().order_by(models.AuditEvent.id).first()
        models.AuditEvent.update(actor="someone else").where(models.AuditEvent.id == victim.id).execute()
    page = console.page("/admin/audit")
    assert "审计记录被改动" in page and f"event {victim.id} does not follow" in page


def _plan(sql: str, params: Any) -> str:
    db = models.db.obj
    if isinstance(db, SqliteDatabase):
        return " ".join(str(row[-1]) for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
    # A few rows: PostgreSQL would read the table whole unless told an index is the only way.
    db.execute_sql("SET enable_seqscan = off")
    try:
        return " ".join(str(row[0]) for row in db.execute_sql("EXPLAIN " + sql, params))
    finally:
        db.execute_sql("SET enable_seqscan = on")


def test_search_at_scale_reads_index_ranges_and_a_bounded_window(console: Console) -> None:
    """Not timed: the plans show each prefix is an index range and "contains" a bounded primary-key range."""
    with models.db.connection_context():
        for node, value in ((models.Order.public_id, "ord_a"), (models.Order.out_trade_no, "LB1"),
                            (models.Order.transaction_id, "42"), (fn.LOWER(models.Order.email), "learner1")):
            plan = _plan(*models.Order.select(models.Order.id).where(console_search._prefix(node, value)).sql())
            assert "INDEX" in plan.upper() and "SEQ SCAN" not in plan.upper(), plan
            assert not plan.startswith("SCAN") and " SCAN order" not in plan, plan
        window = (models.Order.id > 10 - console_search.CONTAINS_WINDOW) & console_search._contains(
            fn.LOWER(models.Order.email), "xample")
        plan = _plan(*models.Order.select(models.Order.id).where(window).sql())
        assert "PRIMARY KEY (rowid>?)" in plan or "order_pkey" in plan, plan
