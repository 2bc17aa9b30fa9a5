"""Rules of billing/content.py that `tests/mutation.py` showed no test held (issue 24): over real HTTP to /provider.

docs/mutation/README.md lists each mutant these tests kill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from conftest import Shop
from learner_helpers import buy
from test_notify_path import settle_refund_of

from billing import content

PAID = "# Paid\n"


@pytest.fixture
def content_dir(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    (root / "cpp-primer-5th" / "ch1").mkdir(parents=True)
    (root / "cpp-primer-5th" / "ch1" / "lesson.md").write_text(PAID)
    (root / "rust-monthly" / "week1").mkdir(parents=True)
    (root / "rust-monthly" / "week1" / "ownership.md").write_text(PAID)
    return root


@pytest.fixture
def shop_settings(content_dir: Path) -> dict[str, Any]:
    return {"CONTENT_DIR": str(content_dir)}


def fetch(shop: Shop, course_id: str, path: str, key: str | None = None) -> requests.Response:
    headers = {"X-Course-Id": course_id}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return shop.session.get(f"{shop.url}/provider/content/{course_id}/{path}", headers=headers, timeout=15)


def code_of(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


def current_key(shop: Shop, buyer_token: str) -> str:
    [lic] = shop.get("/api/v1/me/licenses", token=buyer_token).json()["licenses"]
    return str(lic["key"])


# --- a subscription's keys after a refunded period ----------------------------------------------------

def test_the_key_left_after_a_refunded_renewal_still_opens_the_paid_period(shop: Shop) -> None:
    # The shortened key is signed under the renewal's order, which is refunded; the first period is
    # still paid for, the status API says active, so the paid files open until the shorter end.
    first = buy(shop, "rust-monthly")
    second = buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    settle_refund_of(shop, second["order_id"])
    key = current_key(shop, first["buyer_token"])
    assert shop.get(f"/api/v1/licenses/{first['license']['id']}/status").json()["state"] == "active"

    response = fetch(shop, "rust-monthly", "week1/ownership.md", key)

    assert response.status_code == 200, response.text
    state = shop.get("/provider/licenses", headers={"Authorization": f"Bearer {key}"})
    assert state.status_code == 200 and state.json()["state"] == "active", state.text


def test_the_longer_key_a_refunded_renewal_replaced_opens_nothing(shop: Shop) -> None:
    # The old key still verifies offline (same order id, signed by us), but it is no longer the stored key.
    first = buy(shop, "rust-monthly")
    second = buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    longer = second["license"]["key"]
    settle_refund_of(shop, second["order_id"], amount_fen=1, revoke=True)
    assert current_key(shop, first["buyer_token"]) != longer

    response = fetch(shop, "rust-monthly", "week1/ownership.md", longer)

    assert response.status_code == 401 and code_of(response) == "invalid_license", response.text


def test_an_earlier_key_opens_nothing_once_the_licenses_current_key_is_revoked(shop: Shop) -> None:
    first = buy(shop, "rust-monthly")
    second = buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    earlier = first["license"]["key"]
    assert fetch(shop, "rust-monthly", "week1/ownership.md", earlier).status_code == 200
    from billing.licenses import revoke_license

    import models
    with models.db.connection_context():
        order = models.Order.get(models.Order.public_id == second["order_id"])
        revoke_license(shop.app.extensions["lbpay.shop"], order, reason="chargeback", actor="test")

    response = fetch(shop, "rust-monthly", "week1/ownership.md", earlier)

    assert response.status_code == 403 and code_of(response) == "license_revoked", response.text
