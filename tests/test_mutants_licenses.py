"""Rules of billing/licenses.py that `tests/mutation.py` showed no test held (issue 24): through the console.

docs/mutation/README.md lists each mutant these tests kill.
"""

from __future__ import annotations

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
