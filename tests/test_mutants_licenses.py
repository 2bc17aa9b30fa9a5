"""Rules of billing/licenses.py that `tests/mutation.py` showed no test held (issue 24): through the console.

docs/mutation/README.md lists each mutant these tests kill.
"""

from __future__ import annotations

import pytest
from test_admin import Console, console, paid_order  # noqa: F401 (the signed-in console fixture)

import models


def test_a_reason_of_64_characters_is_kept_and_one_of_65_is_400(console: Console) -> None:
    order = paid_order(console.shop)
    path = f"/admin/orders/{order['order_id']}"

    too_long = console.post(path + "/revoke", {"reason": "r" * 65})
    assert too_long.status_code == 400 and "64" in too_long.text
    assert console.shop.poll(order)["license"]["state"] == "active"
    assert console.post(path + "/revoke", {"reason": "r" * 64}).status_code == 303

    assert console.shop.poll(order)["license"]["state"] == "revoked"
    with models.db.connection_context():
        assert models.License.get(models.License.license_id == order["license"]["id"]).revoke_reason == "r" * 64


def test_revoking_a_revoked_license_keeps_the_first_reason_and_time(console: Console) -> None:
    order = paid_order(console.shop)
    path = f"/admin/orders/{order['order_id']}"
    assert console.post(path + "/revoke", {"reason": "chargeback"}).status_code == 303
    with models.db.connection_context():
        first = models.License.get(models.License.license_id == order["license"]["id"])
    console.shop.clock.advance(60)

    assert console.post(path + "/revoke", {"reason": "second thoughts"}).status_code == 303

    with models.db.connection_context():
        again = models.License.get(models.License.license_id == order["license"]["id"])
        events = models.AuditEvent.select().where(models.AuditEvent.action == "license.revoked").count()
    assert (again.revoke_reason, again.revoked_at) == ("chargeback", first.revoked_at)
    assert events == 1


def test_revoking_one_license_leaves_every_other_license_active(console: Console) -> None:
    mine, theirs = paid_order(console.shop), paid_order(console.shop)

    assert console.post(f"/admin/orders/{mine['order_id']}/revoke", {"reason": "chargeback"}).status_code == 303

    assert console.shop.poll(mine)["license"]["state"] == "revoked"
    assert console.shop.poll(theirs)["license"]["state"] == "active"


def test_reinstating_one_license_leaves_the_others_revoked_and_an_active_one_records_nothing(
        console: Console) -> None:
    mine, theirs = paid_order(console.shop), paid_order(console.shop)
    for order in (mine, theirs):
        assert console.post(f"/admin/orders/{order['order_id']}/revoke", {"reason": "chargeback"}).status_code == 303

    assert console.post(f"/admin/orders/{mine['order_id']}/reinstate", {"reason": "resolved"}).status_code == 303
    assert console.post(f"/admin/orders/{mine['order_id']}/reinstate", {"reason": "twice"}).status_code == 303

    assert console.shop.poll(mine)["license"]["state"] == "active"
    assert console.shop.poll(theirs)["license"]["state"] == "revoked"
    with models.db.connection_context():
        reinstated = [e.detail for e in models.AuditEvent.select().where(
            models.AuditEvent.action == "license.reinstated")]
    assert len(reinstated) == 1 and '"chargeback"' in reinstated[0]


@pytest.mark.parametrize("course_id", ["cpp-primer-5th", "rust-monthly"])
def test_a_comp_is_for_the_course_asked_with_or_without_an_address(console: Console, course_id: str) -> None:
    made = console.post("/admin/comp", {"course": course_id, "reason": "beta tester"})
    assert made.status_code == 303, made.text[:300]
    bad = console.post("/admin/comp", {"course": course_id, "email": "not an address", "reason": "beta tester"})
    assert bad.status_code == 400

    with models.db.connection_context():
        [order] = models.Order.select().where(models.Order.amount_fen == 0)
        license = models.License.get(models.License.order == order.id)
    assert (order.course_id, license.course_id, order.email) == (course_id, course_id, None)
    # A comp is in the books of the mode it was made in, as every order (sandbox orders are kept apart).
    assert order.sandbox is not console.shop.app.extensions["lbpay.shop"].config.live
