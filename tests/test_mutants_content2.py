"""More rules of billing/content.py that `tests/mutation.py` showed no test held (issue 24, round 2).

Over real HTTP to /provider and through `lbpay` run in this process (so a mutant of the module is the
code the command runs). docs/mutation/README.md lists each mutant these tests kill.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any
from urllib.parse import quote

import pytest
import requests
from click.testing import Result
from conftest import Lbpay, Shop
from learner_helpers import buy
from test_mutants_content import content_dir, shop_settings  # noqa: F401 (the same content folder)
from test_notify_path import settle_refund_of

import models

def lbpay(shop: Shop, *args: str) -> Result:
    """`lbpay` run in this process against the test's shop."""
    return Lbpay(lambda: shop.app)(*args)


def fetch(shop: Shop, path: str, key: str, method: str = "GET") -> requests.Response:
    return shop.session.request(method, f"{shop.url}/provider/content/cpp-primer-5th/{path}", timeout=15,
                                headers={"X-Course-Id": "cpp-primer-5th", "Authorization": f"Bearer {key}"})


def events(action: str) -> list[dict[str, Any]]:
    with models.db.connection_context():
        rows = models.AuditEvent.select().where(models.AuditEvent.action == action).order_by(models.AuditEvent.id)
        return [json.loads(row.detail) for row in rows]


def limit_of(course_id: str) -> int | None:
    with models.db.connection_context():
        return models.Course.get_by_id(course_id).download_limit


def payload_of(key: str) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(key.split("|")[0])))


def bought_with_a_limit_of_two(shop: Shop) -> str:
    assert lbpay(shop, "courses", "content", "cpp-primer-5th", "--download-limit", "2").exit_code == 0
    key = str(buy(shop)["license"]["key"])
    assert payload_of(key)["limits"] == {"maxDownloads": 2}
    return key


# --- the download limit, at the last download ----------------------------------------------------------

def test_a_head_at_the_download_limit_is_refused_like_a_get(shop: Shop) -> None:
    key = bought_with_a_limit_of_two(shop)
    assert [fetch(shop, "ch1/lesson.md", key).status_code for _ in range(2)] == [200, 200]

    head, get = fetch(shop, "ch1/lesson.md", key, "HEAD"), fetch(shop, "ch1/lesson.md", key)

    assert head.status_code == 403, head.headers
    assert get.status_code == 403 and get.json()["error"]["code"] == "download_limit_reached", get.text
    assert (get.json()["error"]["downloads"], get.json()["error"]["max_downloads"]) == (2, 2)


def test_the_last_download_and_only_the_last_records_the_limit_used_up(shop: Shop) -> None:
    key = bought_with_a_limit_of_two(shop)
    license_id = payload_of(key)["id"]

    assert fetch(shop, "ch1/lesson.md", key).status_code == 200
    assert events("license.downloads_used_up") == []  # one of two: nothing used up yet
    assert fetch(shop, "ch1/lesson.md", key).status_code == 200
    assert events("license.downloads_used_up") == [{"license": license_id, "max_downloads": 2}]
    assert fetch(shop, "ch1/lesson.md", key).status_code == 403
    assert len(events("license.downloads_used_up")) == 1


# --- setting the limit from the command line ---------------------------------------------------------

@pytest.mark.parametrize("limit, says", [
    ("0", "0 is not in the range x>=1"),  # click's own range check
    ("1000001", "the download limit is a whole number from 1 to 1000000"),  # set_download_limit's
])
def test_lbpay_refuses_a_download_limit_out_of_range_and_changes_nothing(shop: Shop, limit: str, says: str) -> None:
    assert lbpay(shop, "courses", "content", "cpp-primer-5th", "--download-limit", "3").exit_code == 0
    before = events("course.download_limit")

    refused = lbpay(shop, "courses", "content", "cpp-primer-5th", "--download-limit", limit)

    assert refused.exit_code != 0, refused.output
    assert says in refused.output, refused.output
    assert limit_of("cpp-primer-5th") == 3 and events("course.download_limit") == before


def test_lbpay_keeps_a_download_limit_of_one_and_of_a_million(shop: Shop) -> None:
    for limit in (1_000_000, 1):  # both ends of the range
        done = lbpay(shop, "courses", "content", "cpp-primer-5th", "--download-limit", str(limit))
        assert done.exit_code == 0, done.output
        assert done.output.splitlines()[-1].endswith(f"downloads per new license: {limit}")
        assert limit_of("cpp-primer-5th") == limit


def test_lbpay_sets_one_courses_limit_whatever_another_course_has(shop: Shop) -> None:
    assert lbpay(shop, "courses", "content", "cpp-primer-5th", "--download-limit", "5").exit_code == 0

    same = lbpay(shop, "courses", "content", "rust-monthly", "--download-limit", "5")  # the other's number
    other = lbpay(shop, "courses", "content", "rust-monthly", "--download-limit", "7")

    assert same.exit_code == 0 and other.exit_code == 0, same.output + other.output
    assert (limit_of("cpp-primer-5th"), limit_of("rust-monthly")) == (5, 7)
    assert events("course.download_limit") == [
        {"course": "cpp-primer-5th", "before": None, "after": 5},
        {"course": "rust-monthly", "before": None, "after": 5},
        {"course": "rust-monthly", "before": 5, "after": 7}]


# --- the report of a key signed again shorter ---------------------------------------------------------

def test_the_report_of_a_shortened_key_gives_the_keys_own_creation_time(shop: Shop) -> None:
    first = buy(shop, "rust-monthly")
    second = buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    shop.clock.advance(120)  # the shorter key is signed two minutes after the renewal was issued
    settle_refund_of(shop, second["order_id"])
    [lic] = shop.get("/api/v1/me/licenses", token=first["buyer_token"]).json()["licenses"]
    key = str(lic["key"])
    signed = payload_of(key)
    assert signed["orderId"] == second["order_id"]  # signed under the refunded renewal's order
    renewal = payload_of(second["license"]["key"])

    state = shop.get(f"/provider/licenses/{quote(key, safe='')}", headers={"X-Course-Id": "rust-monthly"})

    def instant(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(microsecond=0)

    assert state.status_code == 200, state.text
    assert instant(state.json()["createdAt"]) == instant(signed["createdAt"]) == instant(state.json()["created_at"])
    assert instant(signed["createdAt"]) - instant(renewal["createdAt"]) >= dt.timedelta(seconds=119)
    assert instant(state.json()["expiresAt"]) == instant(signed["expiresAt"])

