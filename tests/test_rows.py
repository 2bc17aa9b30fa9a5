"""billing.rows stores a row exactly as Peewee's own ``Model.create`` stores it, and returns the same instance."""

from __future__ import annotations

import datetime as dt
from typing import Any

import models
from billing import rows
from billing.courses import save_course
from models import Buyer, Order

NOW = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.timezone.utc)


def _stored(model: type[models.BaseModel], row_id: int) -> dict[str, Any]:
    cursor = models.db.execute_sql(f'SELECT * FROM "{model._meta.table_name}" WHERE "id" = ?', (row_id,))
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone()))


def _order_values(n: int, course: Any, buyer: Any) -> dict[str, Any]:
    return dict(public_id=f"ord_{n}", out_trade_no=f"LB2026120710000000000000000{n}", course=course, buyer=buyer,
                email="learner@example.com", description="C++ Primer 第5版", amount_fen=9900, currency="CNY",
                status="pending", token_hash=f"{n:064d}", created_at=NOW, expires_at=NOW + dt.timedelta(hours=2),
                idempotency_key=None, idempotency_request=None, client_key="ck", code_url="weixin://wxpay/x",
                code_url_at=NOW, qr_svg="<svg/>", sandbox=False, payment_method="wechat")


def test_a_prepared_create_stores_and_returns_what_peewees_create_does(app: Any) -> None:
    with app.app_context(), models.db.connection_context():
        models.create_tables()
        course = save_course(app.extensions["lbpay.shop"], course_id="cpp-primer-5th", title="C++ Primer 第5版",
                             price_fen=9900)
        buyers = [make(Buyer, dict(public_id=f"buy_{i}", email=None, created_at=NOW, token_hash=f"{i:064d}"))
                  for i, make in enumerate((lambda m, v: m.create(**v), rows.create))]
        orders = [make(Order, _order_values(i, course, buyers[i]))
                  for i, make in enumerate((lambda m, v: m.create(**v), rows.create))]
        for (peewees, ours), unique in ((buyers, {"id", "public_id", "token_hash"}),
                                        (orders, {"id", "public_id", "out_trade_no", "token_hash", "buyer_id"})):
            assert ours.id == peewees.id + 1
            assert not ours._dirty and not peewees._dirty
            stored = _stored(type(ours), ours.id), _stored(type(peewees), peewees.id)
            assert {k: v for k, v in stored[0].items() if k not in unique} == \
                   {k: v for k, v in stored[1].items() if k not in unique}
            assert ({k: v for k, v in ours.__data__.items() if k not in unique | {"buyer"}}
                    == {k: v for k, v in peewees.__data__.items() if k not in unique | {"buyer"}})
        assert orders[1].course is course and orders[1].buyer is buyers[1]
        assert Order.get_by_id(orders[1].id).status == "pending"


def test_a_prepared_find_reads_what_peewees_select_reads(app: Any) -> None:
    from models import Course, DiscountCode

    with app.app_context(), models.db.connection_context():
        models.create_tables()
        shop = app.extensions["lbpay.shop"]
        for slug in ("cpp-primer-5th", "rust-book"):
            save_course(shop, course_id=slug, title=slug, price_fen=9900)
        Course.update(active=False).where(Course.id == "rust-book").execute()
        for value, paused in ((5900, None), (4900, NOW), (6900, None)):
            DiscountCode.create(kind="launch", value=value, course="cpp-primer-5th", paused_at=paused,
                                created_at=NOW, created_by="creator")
        for model, where, peewees in (
                (Course, {"id": "cpp-primer-5th", "active": True}, Course.select().where(
                    (Course.id == "cpp-primer-5th") & (Course.active == True))),  # noqa: E712
                (Course, {"id": "rust-book", "active": True}, Course.select().where(
                    (Course.id == "rust-book") & (Course.active == True))),  # noqa: E712
                (DiscountCode, {"kind": "launch", "course": "cpp-primer-5th", "paused_at": None},
                 DiscountCode.select().where((DiscountCode.kind == "launch") & (DiscountCode.course == "cpp-primer-5th")
                                             & DiscountCode.paused_at.is_null()).order_by(DiscountCode.id))):
            ours = rows.find(model, where)
            assert [o.__data__ for o in ours] == [p.__data__ for p in peewees]
            assert all(not o._dirty for o in ours)
        assert [d.value for d in rows.find(DiscountCode, {"paused_at": None})] == [5900, 6900]
        assert rows.find(Course, {"id": "rust-book", "active": True}) == []
