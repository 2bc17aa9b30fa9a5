"""The content provider under /provider, over real HTTP: who gets which file, and what never leaves the course."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from conftest import Shop
from learner_helpers import buy
from test_admin import console  # noqa: F401  (the signed-in console fixture)
from test_admin import Console
from test_learner_api import refund_in_full

import models
from billing import content
from billing.content import set_download_limit

ROOT = Path(__file__).resolve().parent.parent
LESSON = "# Chapter 1\n\nPaid words.\n"
INTRO = "# Welcome\n\nFree words.\n"
BIG = bytes(range(256)) * 8  # 2048 bytes, for ranges


@pytest.fixture
def content_dir(tmp_path: Path) -> Path:
    """Two courses' files, plus the traps: a secret beside them, hidden files, links out of the course and out of free/."""
    root = tmp_path / "content"
    cpp = root / "cpp-primer-5th"
    (cpp / "free").mkdir(parents=True)
    (cpp / "ch1").mkdir()
    (cpp / "free" / "intro.md").write_text(INTRO)
    (cpp / "ch1" / "lesson.md").write_text(LESSON)
    (cpp / "big.bin").write_bytes(BIG)
    (cpp / ".env").write_text("hidden")
    (tmp_path / "secret.txt").write_text("the server's secret")
    (root / "beside.txt").write_text("not in any course")
    os.symlink(tmp_path / "secret.txt", cpp / "ch1" / "outside.md")
    os.symlink(cpp / "ch1" / "lesson.md", cpp / "free" / "into-paid.md")
    (root / "rust-monthly" / "week1").mkdir(parents=True)
    (root / "rust-monthly" / "week1" / "ownership.md").write_text("# Ownership\n")
    return root


@pytest.fixture
def shop_settings(content_dir: Path) -> dict[str, Any]:
    return {"CONTENT_DIR": str(content_dir)}


def fetch(shop: Shop, course_id: str, path: str, key: str | None = None, **headers: str) -> requests.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    headers.setdefault("X-Course-Id", course_id)
    headers.setdefault("Accept", "text/plain")
    return shop.session.get(f"{shop.url}/provider/content/{course_id}/{path}", headers=headers, timeout=15)


def raw_get(shop: Shop, path: str, key: str | None = None) -> tuple[int, bytes]:
    """Send the request line exactly as written: no client normalises dots or re-encodes anything."""
    parts = urlsplit(shop.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        if key is not None:
            connection.putheader("Authorization", f"Bearer {key}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def error_code(response: requests.Response) -> str:
    assert response.headers["Content-Type"] == "application/json", response.text
    body = response.json()
    assert set(body["error"]) >= {"code", "message"} and body["error"]["message"]
    return str(body["error"]["code"])


def payload_of(key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(key.split("|")[0]))
    return data


def downloads(license_id: str) -> int:
    with models.db.connection_context():
        return sum(lic.downloads for lic in models.License.select().where(models.License.license_id == license_id))


# --- the catalogue and the tree --------------------------------------------------------------------

def test_health_catalog_and_search_speak_the_extensions_client(shop: Shop) -> None:
    assert shop.get("/provider/health").json()["status"] == "ok"
    catalog = shop.get("/provider/catalog").json()
    assert catalog["type"] == "catalog"
    assert [(c["id"], c["title"], c["type"]) for c in catalog["courses"]] == [
        ("cpp-primer-5th", "C++ Primer 第5版", "course"), ("rust-monthly", "Rust 每月一课", "course")]
    found = shop.get("/provider/catalog/search", params={"q": "RUST"}).json()["courses"]
    assert [c["id"] for c in found] == ["rust-monthly"]
    assert shop.get("/provider/catalog/search", params={"q": "第5版"}).json()["courses"][0]["id"] == "cpp-primer-5th"
    assert shop.get("/provider/catalog/search", params={"q": "' OR 1=1 --"}).json()["courses"] == []
    too_long = shop.get("/provider/catalog/search", params={"q": "x" * 101})
    assert too_long.status_code == 400 and error_code(too_long) == "bad_request"


def test_the_structure_lists_what_is_served_and_nothing_else(shop: Shop) -> None:
    tree = shop.get("/provider/courses/cpp-primer-5th/structure").json()
    assert (tree["type"], tree["id"]) == ("course", "cpp-primer-5th")
    assert [(f["path"], f["size"], f["free"]) for f in tree["files"]] == [("big.bin", len(BIG), False)]
    exercises = {e["path"]: e for e in tree["exercises"]}
    assert sorted(exercises) == ["ch1", "free"]
    # The link out of the course and the link from free/ into paid files are left out; hidden names too.
    assert [(f["path"], f["free"]) for f in exercises["ch1"]["files"]] == [("ch1/lesson.md", False)]
    assert [(f["path"], f["free"]) for f in exercises["free"]["files"]] == [("free/intro.md", True)]
    missing = shop.get("/provider/courses/no-such-course/structure")
    assert missing.status_code == 404 and error_code(missing) == "course_not_found"


def test_the_structure_is_walked_once_a_minute_and_asked_for_a_limited_number_of_times(
        shop: Shop, content_dir: Path) -> None:
    # Issue 24: every anonymous request walked the whole tree (0.35 s for 4,800 files).
    from billing import limits

    shop.clock.freeze()
    first = shop.get("/provider/courses/cpp-primer-5th/structure").json()
    (content_dir / "cpp-primer-5th" / "new.md").write_text("# New\n")
    assert shop.get("/provider/courses/cpp-primer-5th/structure").json() == first  # the walk is kept
    shop.clock.advance(content.STRUCTURE_FRESH_FOR.total_seconds())
    later = shop.get("/provider/courses/cpp-primer-5th/structure").json()
    assert "new.md" in [f["path"] for f in later["files"]]  # and walked again once it is a minute old
    rule = limits.STRUCTURE_PER_CLIENT
    answers = [shop.get("/provider/courses/cpp-primer-5th/structure").status_code for _ in range(rule.count)]
    assert answers == [200] * (rule.count - 1) + [429]  # the request just above took one
    refused = shop.get("/provider/courses/cpp-primer-5th/structure")
    assert error_code(refused) == "rate_limited" and int(refused.headers["Retry-After"]) >= 1


def test_lbpay_courses_content_lists_what_is_served_and_sets_the_limit(shop: Shop, tmp_path: Path,
                                                                       content_dir: Path) -> None:
    from test_documents import lbpay_in_live_mode

    listed = lbpay_in_live_mode(shop, tmp_path, "courses", "content", "cpp-primer-5th", "--download-limit", "3",
                                CONTENT_DIR=str(content_dir))

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"licensed\t{len(BIG)}\tbig.bin",
        f"licensed\t{len(LESSON)}\tch1/lesson.md",
        f"free\t{len(INTRO)}\tfree/intro.md",
        f"3 files from {content_dir / 'cpp-primer-5th'}; downloads per new license: 3",
    ]
    with models.db.connection_context():
        assert models.Course.get_by_id("cpp-primer-5th").download_limit == 3


# --- who gets a paid file ----------------------------------------------------------------------------

def test_a_license_for_the_course_opens_its_paid_files(shop: Shop) -> None:
    key = buy(shop)["license"]["key"]

    response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", key)

    assert response.status_code == 200 and response.text == LESSON
    assert response.headers["ETag"] and response.headers["Accept-Ranges"] == "bytes"
    state = shop.get(f"/provider/licenses/{quote(key, safe='')}", headers={"X-Course-Id": "cpp-primer-5th"})
    assert state.status_code == 200
    dates = {"expiresAt": None, "createdAt": None, "expires_at": None, "created_at": None}
    assert state.json() | dates == {
        "valid": True, "state": "active", "id": payload_of(key)["id"], "courseId": "cpp-primer-5th",
        "plan": "one_time", "downloads": 1, "maxDownloads": None,
        "contentPermissions": ["all_chapters"], "content_permissions": ["all_chapters"], **dates}


def test_the_license_state_speaks_the_extensions_snake_case_names(shop: Shop) -> None:
    """The extension's addLicense reads created_at, expires_at and content_permissions (issue 18, item 5)."""
    key = buy(shop, "rust-monthly")["license"]["key"]
    signed = payload_of(key)

    state = shop.get(f"/provider/licenses/{quote(key, safe='')}", headers={"X-Course-Id": "rust-monthly"}).json()

    def instant(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    for ours, theirs in (("createdAt", "created_at"), ("expiresAt", "expires_at")):
        assert state[ours] == state[theirs]
        assert instant(state[theirs]) == instant(signed[ours]).replace(microsecond=0)  # to the second
    assert instant(state["expires_at"]) - instant(state["created_at"]) == dt.timedelta(days=30)
    assert state["content_permissions"] == state["contentPermissions"] == signed["contentPermissions"]


def test_the_license_key_may_travel_in_a_header_instead_of_the_url(shop: Shop) -> None:
    key = buy(shop)["license"]["key"]
    rust_key = buy(shop, "rust-monthly")["license"]["key"]
    by_path = shop.get(f"/provider/licenses/{quote(key, safe='')}", headers={"X-Course-Id": "cpp-primer-5th"})

    def by_header(**headers: str) -> requests.Response:
        return shop.session.get(f"{shop.url}/provider/licenses", headers=headers, timeout=15)

    bearer = by_header(Authorization=f"Bearer {key}", **{"X-Course-Id": "cpp-primer-5th"})
    named = by_header(**{"X-License-Key": key, "X-Course-Id": "cpp-primer-5th"})
    assert bearer.status_code == named.status_code == 200
    assert bearer.json() | {"downloads": 0} == named.json() | {"downloads": 0} == by_path.json() | {"downloads": 0}

    no_key = by_header(**{"X-Course-Id": "cpp-primer-5th"})
    assert no_key.status_code == 401 and error_code(no_key) == "no_license"
    basic = by_header(Authorization="Basic eDp5")
    assert basic.status_code == 401 and error_code(basic) == "no_license"
    two = by_header(Authorization=f"Bearer {key}", **{"X-License-Key": rust_key})
    assert two.status_code == 401 and error_code(two) == "invalid_license"
    assert "different keys" in two.json()["error"]["message"]
    other = by_header(Authorization=f"Bearer {rust_key}", **{"X-Course-Id": "cpp-primer-5th"})
    assert other.status_code == 403 and error_code(other) == "wrong_course"
    unknown = by_header(**{"X-License-Key": "not-a-license"})
    assert unknown.status_code == 404 and error_code(unknown) == "license_not_found"


def test_a_license_key_in_the_path_never_reaches_the_request_log(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24: the path field was exempt from redaction, so GET /provider/licenses/<key> logged the key."""
    key = buy(shop)["license"]["key"]
    data, signature = key.split("|")
    capsys.readouterr()

    assert shop.get(f"/provider/licenses/{quote(key, safe='')}").status_code == 200
    assert shop.get(f"/provider/licenses/{key}").status_code == 200
    assert shop.get(f"/provider/licences/{quote(key, safe='')}").status_code == 404  # a typo'd route

    written = capsys.readouterr().err
    logged = [json.loads(line) for line in written.splitlines() if line.startswith("{")]
    paths = [e["path"] for e in logged if e["logger"] == "lbpay.request"]
    assert paths == ["/provider/licenses/[redacted]"] * 2 + ["/provider/licences/[redacted]"]
    for secret in (key, data, signature, data[:40], signature[:40], data[-24:], signature[-20:]):
        assert secret not in written


def test_no_license_is_401(shop: Shop) -> None:
    for response in (fetch(shop, "cpp-primer-5th", "ch1/lesson.md"),
                     fetch(shop, "cpp-primer-5th", "ch1/lesson.md", Authorization="Basic eDp5")):
        assert response.status_code == 401 and error_code(response) == "no_license"


def test_another_courses_license_is_403(shop: Shop) -> None:
    rust_key = buy(shop, "rust-monthly")["license"]["key"]

    response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", rust_key)

    assert response.status_code == 403 and error_code(response) == "wrong_course"
    state = shop.get(f"/provider/licenses/{rust_key}", headers={"X-Course-Id": "cpp-primer-5th"})
    assert state.status_code == 403 and error_code(state) == "wrong_course"
    assert downloads(payload_of(rust_key)["id"]) == 0


def test_a_mismatched_x_course_id_is_400(shop: Shop) -> None:
    key = buy(shop)["license"]["key"]

    response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", key, **{"X-Course-Id": "rust-monthly"})

    assert response.status_code == 400 and error_code(response) == "bad_request"


def test_an_expired_license_is_403(shop: Shop) -> None:
    key = buy(shop, "rust-monthly")["license"]["key"]
    assert fetch(shop, "rust-monthly", "week1/ownership.md", key).status_code == 200

    shop.clock.advance(31 * 86400)
    response = fetch(shop, "rust-monthly", "week1/ownership.md", key)

    assert response.status_code == 403 and error_code(response) == "license_expired"


def test_a_refunded_license_is_403(shop: Shop) -> None:
    bought = buy(shop)
    assert fetch(shop, "cpp-primer-5th", "ch1/lesson.md", bought["license"]["key"]).status_code == 200

    refund_in_full(shop, bought["order_id"])
    response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", bought["license"]["key"])

    assert response.status_code == 403 and error_code(response) == "license_revoked"
    state = shop.get(f"/provider/licenses/{bought['license']['key']}", headers={"X-Course-Id": "cpp-primer-5th"})
    assert state.status_code == 403 and error_code(state) == "license_revoked"


def test_the_revocation_list_is_no_bearer_token(shop: Shop) -> None:
    buy(shop)
    revocations = shop.get("/api/v1/revocations").text.strip()

    response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", revocations)

    assert response.status_code == 401 and error_code(response) == "invalid_license"
    state = shop.get(f"/provider/licenses/{revocations}", headers={"X-Course-Id": "cpp-primer-5th"})
    assert state.status_code == 404 and error_code(state) == "license_not_found"


def test_a_forged_or_foreign_license_is_401(shop: Shop) -> None:
    key = buy(shop)["license"]["key"]
    data, signature = key.split("|")
    forged = base64.b64encode(json.dumps({**payload_of(key), "courseId": "cpp-primer-5th",
                                          "expiresAt": "2999-01-01T00:00:00.000Z"}).encode()).decode()
    sample = (ROOT / "tests" / "vectors" / "learning-buddy-license" / "test-license-valid.txt").read_text()
    for bad in (f"{forged}|{signature}", sample, "garbage", data):
        response = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", bad)
        assert response.status_code == 401 and error_code(response) == "invalid_license", bad[:30]


# --- nothing leaves the course folder ----------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "../beside.txt", "ch1/../../beside.txt", "%2e%2e/beside.txt", "..%2fbeside.txt", "ch1/%2e%2e/%2e%2e/beside.txt",
    "%2E%2E%2F%2E%2E%2Fsecret.txt", "/etc/passwd", "%2Fetc%2Fpasswd", "ch1//lesson.md", "./ch1/lesson.md",
    "ch1/outside.md", "free/into-paid.md", ".env", "ch1/lesson.md%00.txt", "ch1\\lesson.md", "ch1%5clesson.md",
    "nothing-here.md", "ch1",
])
def test_no_path_leaves_the_course_folder(shop: Shop, path: str) -> None:
    key = buy(shop)["license"]["key"]

    status, body = raw_get(shop, f"/provider/content/cpp-primer-5th/{path}", key)

    assert status == 404, (path, body[:200])
    assert b"secret" not in body and b"not in any course" not in body and b"Paid words" not in body
    assert json.loads(body)["error"]["code"] in ("not_found", "course_not_found")


def test_a_course_id_that_is_a_path_is_not_a_course(shop: Shop) -> None:
    for path in ("/provider/content/../content/cpp-primer-5th/ch1/lesson.md", "/provider/content/%2e%2e/beside.txt",
                 "/provider/content/cpp-primer-5th%2f..%2f/beside.txt"):
        status, body = raw_get(shop, path)
        assert status == 404 and b"not in any course" not in body, path


# --- free files, ranges, caching -----------------------------------------------------------------------

def test_free_files_need_no_license_and_are_not_counted(shop: Shop) -> None:
    key = buy(shop)["license"]["key"]

    anonymous = fetch(shop, "cpp-primer-5th", "free/intro.md")
    with_license = fetch(shop, "cpp-primer-5th", "free/intro.md", key)

    assert (anonymous.status_code, anonymous.text) == (200, INTRO)
    assert with_license.status_code == 200
    assert downloads(payload_of(key)["id"]) == 0


def test_range_requests_get_206_with_the_bytes_asked_for(shop: Shop) -> None:
    key = buy(shop)["license"]["key"]

    part = fetch(shop, "cpp-primer-5th", "big.bin", key, Range="bytes=100-199")
    tail = fetch(shop, "cpp-primer-5th", "big.bin", key, Range="bytes=-10")
    beyond = fetch(shop, "cpp-primer-5th", "big.bin", key, Range="bytes=5000-")

    assert part.status_code == 206 and part.content == BIG[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(BIG)}"
    assert tail.status_code == 206 and tail.content == BIG[-10:]
    assert beyond.status_code == 416


def test_an_unchanged_file_is_304_by_etag_and_not_counted(shop: Shop) -> None:
    key = buy(shop)["license"]["key"]
    first = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", key)
    etag = first.headers["ETag"]

    again = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", key, **{"If-None-Match": etag})
    stale = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", key, **{"If-None-Match": '"something-else"'})
    nobody = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", **{"If-None-Match": etag})

    assert again.status_code == 304 and again.content == b""
    assert stale.status_code == 200 and stale.text == LESSON
    assert nobody.status_code == 401  # the tag of a paid file tells nothing without a license
    assert downloads(payload_of(key)["id"]) == 2


# --- the download limit ----------------------------------------------------------------------------

def test_a_course_download_limit_is_signed_into_new_licenses_and_enforced(shop: Shop, console: Console) -> None:  # noqa: F811
    unlimited = buy(shop)["license"]["key"]
    with models.db.connection_context():
        set_download_limit(shop.app.extensions["lbpay.shop"], "cpp-primer-5th", 2, actor="test")
    bought = buy(shop)
    key = bought["license"]["key"]
    assert payload_of(key)["limits"] == {"maxDownloads": 2}
    assert "limits" not in payload_of(unlimited)  # sold without a limit, it keeps none

    first = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", key)
    head = shop.session.head(f"{shop.url}/provider/content/cpp-primer-5th/big.bin",
                             headers={"Authorization": f"Bearer {key}"}, timeout=15)
    second = fetch(shop, "cpp-primer-5th", "big.bin", key, Range="bytes=0-9")
    third = fetch(shop, "cpp-primer-5th", "ch1/lesson.md", key)

    assert [first.status_code, head.status_code, second.status_code] == [200, 200, 206]
    assert third.status_code == 403 and error_code(third) == "download_limit_reached"
    assert third.json()["error"]["max_downloads"] == 2
    assert fetch(shop, "cpp-primer-5th", "free/intro.md", key).status_code == 200
    state = shop.get(f"/provider/licenses/{key}", headers={"X-Course-Id": "cpp-primer-5th"}).json()
    assert (state["downloads"], state["maxDownloads"]) == (2, 2)
    for _ in range(3):
        assert fetch(shop, "cpp-primer-5th", "ch1/lesson.md", unlimited).status_code == 200
    page = console.page(f"/admin/orders/{bought['order_id']}")
    assert '<dd id="license-downloads">2</dd>' in page
    with models.db.connection_context():
        assert models.AuditEvent.select().where(models.AuditEvent.action == "license.downloads_used_up").count() == 1


def test_a_renewal_does_not_reset_the_download_limit(shop: Shop) -> None:
    # Issue 24: downloads were counted per key, and a renewal is a new key: every renewal (or a second
    # cheap period) gave the whole limit again. They count per license id, across its keys.
    with models.db.connection_context():
        set_download_limit(shop.app.extensions["lbpay.shop"], "rust-monthly", 2, actor="test")
    first = buy(shop, "rust-monthly")
    key = first["license"]["key"]
    assert [fetch(shop, "rust-monthly", "week1/ownership.md", key).status_code for _ in range(2)] == [200, 200]
    renewed = buy(shop, "rust-monthly", buyer_token=first["buyer_token"])
    new_key = renewed["license"]["key"]
    assert new_key != key and renewed["license"]["id"] == first["license"]["id"]
    refused = fetch(shop, "rust-monthly", "week1/ownership.md", new_key)
    assert refused.status_code == 403 and error_code(refused) == "download_limit_reached"
    state = shop.get(f"/provider/licenses/{new_key}", headers={"X-Course-Id": "rust-monthly"}).json()
    assert (state["downloads"], state["maxDownloads"]) == (2, 2)
    assert downloads(first["license"]["id"]) == 2


# --- errors are JSON everywhere under /provider ------------------------------------------------------

def test_unknown_provider_paths_answer_json(shop: Shop) -> None:
    for path in ("/provider/nothing/here", "/provider/", "/provider/content/cpp-primer-5th"):
        missing = shop.get(path)
        assert missing.status_code == 404 and error_code(missing) == "not_found", path
    unknown_key = shop.get("/provider/licenses/not-a-license")
    assert unknown_key.status_code == 404 and error_code(unknown_key) == "license_not_found"


def test_provider_answers_match_the_spec(shop: Shop) -> None:
    from test_openapi import check

    key = buy(shop)["license"]["key"]
    rust_key = buy(shop, "rust-monthly")["license"]["key"]
    check(shop.get("/provider/health"), "/provider/health", "get")
    check(shop.get("/provider/catalog"), "/provider/catalog", "get")
    check(shop.get("/provider/catalog/search", params={"q": "c++"}), "/provider/catalog/search", "get")
    check(shop.get("/provider/catalog/search", params={"q": "\x00"}), "/provider/catalog/search", "get")
    check(shop.get("/provider/courses/cpp-primer-5th/structure"), "/provider/courses/{course_id}/structure", "get")
    check(shop.get("/provider/courses/nope/structure"), "/provider/courses/{course_id}/structure", "get")
    licenses = "/provider/licenses/{key}"
    check(shop.get(f"/provider/licenses/{key}", headers={"X-Course-Id": "cpp-primer-5th"}), licenses, "get")
    check(shop.get(f"/provider/licenses/{key}", headers={"X-Course-Id": "rust-monthly"}), licenses, "get")
    check(shop.get("/provider/licenses/nothing"), licenses, "get")
    by_header = "/provider/licenses"
    check(shop.get(by_header, headers={"X-License-Key": key, "X-Course-Id": "cpp-primer-5th"}), by_header, "get")
    check(shop.get(by_header, token=key, headers={"X-Course-Id": "cpp-primer-5th"}), by_header, "get")
    check(shop.get(by_header, token=rust_key, headers={"X-Course-Id": "cpp-primer-5th"}), by_header, "get")
    check(shop.get(by_header, token=key, headers={"X-License-Key": rust_key}), by_header, "get")
    check(shop.get(by_header), by_header, "get")
    check(shop.get(by_header, headers={"X-License-Key": "nothing"}), by_header, "get")
    content = "/provider/content/{course_id}/{path}"
    check(fetch(shop, "cpp-primer-5th", "ch1/lesson.md"), content, "get")
    check(fetch(shop, "cpp-primer-5th", "ch1/lesson.md", rust_key), content, "get")
    check(fetch(shop, "cpp-primer-5th", "ch1/nothing.md", key), content, "get")
    check(fetch(shop, "cpp-primer-5th", "ch1/lesson.md", key, **{"X-Course-Id": "rust-monthly"}), content, "get")
