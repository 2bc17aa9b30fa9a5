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
