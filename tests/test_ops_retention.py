"""Data retention: raw notifications and personal data go after the retention period; money records stay."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FakeClock, Shop, command_line, database_url_for

import models
from operations.retention import purge

EMAIL = "learner@example.com"


def snapshot() -> dict[str, object]:
    with models.db.connection_context():
        order = models.Order.select().order_by(models.Order.id).first()
        note = models.Notification.select().order_by(models.Notification.id).first()
        return {"email": order.email, "openid": order.payer_openid, "body": note.body,
                "buyer_email": order.buyer.email,
                "money": (order.amount_fen, order.transaction_id, order.out_trade_no, order.paid_at,
                          order.licenses.get().license_id, note.out_trade_no, note.result)}


def test_purge_forgets_personal_data_after_the_period_and_keeps_the_money_record(shop: Shop, clock: FakeClock,
                                                                                 tmp_path: Path) -> None:
    order = shop.order(email=EMAIL)
    shop.sandbox.pay(order["out_trade_no"])
    shop.wait_for_status(order, "fulfilled")
    before = snapshot()
    assert before["email"] == EMAIL and before["openid"] and before["body"]

    core = shop.app.extensions["lbpay.shop"]
    with models.db.connection_context():
        assert purge(core, core.now()) == {"notifications": 0, "orders": 0, "buyers": 0, "complaints": 0}
        clock.advance(401 * 86400)
        counts = purge(core, core.now(), dry_run=True)
        assert counts["notifications"] >= 1 and counts["orders"] == 1 and counts["buyers"] == 1
        assert snapshot() == before  # a dry run changes nothing
        assert purge(core, core.now()) == counts
        assert purge(core, core.now()) == {"notifications": 0, "orders": 0, "buyers": 0, "complaints": 0}
        events = [json.loads(e.detail) for e in
                  models.AuditEvent.select().where(models.AuditEvent.action == "retention.purged")]
    after = snapshot()
    assert after["email"] is None and after["openid"] is None and after["buyer_email"] is None
    assert after["body"] == ""
    assert after["money"] == before["money"]
    assert len(events) == 1 and events[0]["days"] == 400
    with models.db.connection_context():  # the keyed client address goes with the rest
        assert models.Order.get().client_key is None


def test_purge_dry_run_on_the_command_line_shows_what_would_go(shop: Shop, tmp_path: Path) -> None:
    shop.order(email=EMAIL)
    result = command_line(tmp_path / "cli", DATABASE_URL=database_url_for(tmp_path))("purge", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("would purge (older than 400 days): 0 notification bodies")
