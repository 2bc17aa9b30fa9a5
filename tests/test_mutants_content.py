"""Rules of billing/content.py that `tests/mutation.py` showed no test held (issue 24): over real HTTP to /provider.

docs/mutation/README.md lists each mutant these tests kill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Shop
from learner_helpers import buy
from test_admin import Console, console  # noqa: F401 (the signed-in console fixture)
from test_notify_path import settle_refund_of

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


# --- the bounds of a path, a search and a tree ----------------------------------------------------------

def test_a_path_of_1024_characters_is_served_and_one_of_1025_is_not(shop: Shop, content_dir: Path) -> None:
    folders = ["free"] + ["d" * 200] * 4  # 5 + 4 × 201 characters with the slashes
    (content_dir / "cpp-primer-5th").joinpath(*folders).mkdir(parents=True)
    longest = "/".join(folders + ["f" * 215])
    too_long = "/".join(folders + ["g" * 216])
    for path in (longest, too_long):
        (content_dir / "cpp-primer-5th" / path).write_text("free words")
    assert (len(longest), len(too_long)) == (1024, 1025)

    served, refused = fetch(shop, "cpp-primer-5th", longest), fetch(shop, "cpp-primer-5th", too_long)

    assert (served.status_code, served.text) == (200, "free words")
    assert refused.status_code == 404 and code_of(refused) == "not_found"


def test_a_search_of_100_characters_is_answered_and_a_control_character_is_400(shop: Shop) -> None:
    longest = shop.get("/provider/catalog/search", params={"q": "x" * 100})
    assert longest.status_code == 200 and longest.json()["courses"] == []
    for query in ("rust\x01", "rust\\"):
        odd = shop.get("/provider/catalog/search", params={"q": query})
        assert odd.status_code == 400 and code_of(odd) == "bad_request", query


def files_in(tree: dict[str, Any]) -> list[str]:
    found = [f["path"] for f in tree["files"]]
    for folder in tree.get("exercises", []) + tree.get("folders", []):
        found += files_in(folder)
    return found


def test_the_tree_lists_files_17_levels_down_and_no_deeper(shop: Shop, content_dir: Path) -> None:
    chain = [f"d{n:02}" for n in range(1, 18)]  # 17 folders
    deepest = content_dir / "cpp-primer-5th" / Path(*chain)
    deepest.mkdir(parents=True)
    (deepest.parent / "level17.md").write_text(PAID)  # 16 folders and the file: 17 segments
    (deepest / "level18.md").write_text(PAID)

    listed = files_in(shop.get("/provider/courses/cpp-primer-5th/structure").json())

    assert "/".join(chain[:16] + ["level17.md"]) in listed
    assert not [path for path in listed if path.endswith("level18.md")]


def test_the_tree_lists_at_most_5000_entries(shop: Shop, content_dir: Path) -> None:
    course = content_dir / "rust-monthly"
    for n in range(5000):  # before week1/ by name: week1 and its file are the 5001st and 5002nd entries
        (course / f"a{n:04}.md").write_text("")

    # Walking 5,000 entries is quick on a quiet machine and took 18 s on a loaded one: a hang detector, not a goal.
    tree = shop.session.get(f"{shop.url}/provider/courses/rust-monthly/structure", timeout=300).json()

    assert len(tree["files"]) == 5000 and tree["exercises"] == []


def test_a_download_limit_of_a_million_is_kept_and_one_more_is_refused(console: Console) -> None:
    import models

    def save(limit: str) -> requests.Response:
        return console.post("/admin/courses/cpp-primer-5th/edit", {
            "title": "C++ Primer 第5版", "price": "99.00", "plan": "one_time", "period_days": "",
            "download_limit": limit, "description": "", "active": "on"})

    assert save("1000000").status_code == 303
    refused = save("1000001")
    assert refused.status_code == 400 and 'id="download_limit-problem"' in refused.text
    with models.db.connection_context():
        assert models.Course.get_by_id("cpp-primer-5th").download_limit == 1_000_000
    for limit, kept in (("1", 1), ("", None)):  # the smallest limit, and no limit at all
        assert save(limit).status_code == 303
        with models.db.connection_context():
            assert models.Course.get_by_id("cpp-primer-5th").download_limit == kept


def test_a_key_that_does_not_verify_is_told_why(shop: Shop) -> None:
    key = buy(shop)["license"]["key"]
    data, signature = key.split("|")
    forged = f"{data}|{signature[:-4]}AAAA"

    response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", forged)

    assert response.status_code == 401 and code_of(response) == "invalid_license"
    assert response.json()["error"]["message"].endswith("(bad signature)"), response.text


def test_a_key_we_signed_for_an_order_this_shop_never_had_is_401(shop: Shop) -> None:
    # Signed with our own key (a restored backup, another instance sharing keys), but no order here names it.
    import datetime as dt
    import uuid

    from licensing import issue_license

    now = shop.clock()
    stranger = issue_license(shop.app.extensions["lbpay.shop"].license_keys.active, license_id=str(uuid.uuid4()),
                             course_id="cpp-primer-5th", order_id="ord_never_here", plan="one_time",
                             created_at=now, expires_at=now + dt.timedelta(days=365))

    response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", stranger)

    assert response.status_code == 401 and code_of(response) == "invalid_license", response.text
    assert "unknown license" in response.json()["error"]["message"]


def test_a_refunded_one_time_license_reinstated_by_hand_still_opens_nothing(console: Console) -> None:
    from test_learner_api import refund_in_full

    shop = console.shop
    bought = buy(shop)
    refund_in_full(shop, bought["order_id"])
    path = f"/admin/orders/{bought['order_id']}/reinstate"
    assert console.post(path, {"reason": "clicked by mistake"}).status_code == 303

    response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", bought["license"]["key"])

    assert response.status_code == 403 and code_of(response) == "license_refunded", response.text


def test_another_learners_revoked_license_closes_nothing_of_mine(console: Console) -> None:
    shop = console.shop
    mine, theirs = buy(shop), buy(shop)
    assert console.post(f"/admin/orders/{theirs['order_id']}/revoke", {"reason": "chargeback"}).status_code == 303

    assert fetch(shop, "cpp-primer-5th", "ch1/lesson.md", mine["license"]["key"]).status_code == 200
    refused = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", theirs["license"]["key"])
    assert refused.status_code == 403 and code_of(refused) == "license_revoked"


def test_the_own_key_of_a_refunded_first_period_opens_nothing_after_a_renewal(shop: Shop) -> None:
    first = buy(shop, "rust-monthly")
    buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    settle_refund_of(shop, first["order_id"])

    refused = fetch(shop, "rust-monthly", "week1/ownership.md", first["license"]["key"])

    assert refused.status_code == 403 and code_of(refused) == "license_revoked", refused.text
    assert fetch(shop, "rust-monthly", "week1/ownership.md", current_key(shop, first["buyer_token"])).status_code == 200


def test_a_course_id_of_64_characters_is_a_course(shop: Shop, content_dir: Path) -> None:
    from billing.courses import save_course

    import models
    longest = "c" * 64
    with models.db.connection_context():
        save_course(shop.app.extensions["lbpay.shop"], course_id=longest, title="Longest", price_fen=100)
    (content_dir / longest / "free").mkdir(parents=True)
    (content_dir / longest / "free" / "intro.md").write_text("free words")

    tree = shop.get(f"/provider/courses/{longest}/structure")

    assert tree.status_code == 200 and tree.json()["id"] == longest
    assert fetch(shop, longest, "free/intro.md").text == "free words"
    # A new folder put in place (as an upload does) is walked at once, for the longest id too.
    (content_dir / longest).rename(content_dir / "replaced")
    (content_dir / longest / "free").mkdir(parents=True)
    (content_dir / longest / "free" / "welcome.md").write_text("new words")
    assert files_in(shop.get(f"/provider/courses/{longest}/structure").json()) == ["free/welcome.md"]
