"""The course editor: description, cover, plan in words, period, download limit, a buy link to copy, and each
form mistake shown under its field on the same form (never a generic "malformed" page)."""

from __future__ import annotations

import re

import requests
from test_admin import Console, console  # noqa: F401 (the console fixture)

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")


def form(**fields: str) -> dict[str, str]:
    base = {"title": "Rust 入门", "price": "49.00", "plan": "one_time", "period_days": "", "download_limit": "",
            "description": "", "active": "on"}
    return {**base, **fields}


def test_every_mistake_is_named_under_its_field_and_what_was_typed_stays(console: Console) -> None:
    answer = console.post("/admin/courses/new", form(id="Rust Basics", title="", price="49.999", plan="subscription",
                                                     download_limit="0", description="x" * 2001))
    assert answer.status_code == 400
    page = answer.text
    for name in ("id", "title", "price", "period_days", "download_limit", "description"):
        assert f'id="{name}-problem"' in page, name
    assert "订阅需要填写有效期" in page and "like 99 or 99.00" in page and "cpp-primer-5th" in page
    assert 'value="49.999"' in page and 'value="Rust Basics"' in page  # what was typed stays
    assert "malformed" not in page and "one_time" not in re.sub(r'value="one_time"', "", page)
    not_png = console.post("/admin/courses/new", form(id="rust-basics"),
                           files={"cover": ("cover.png", b"GIF89a not a png", "image/png")})
    assert not_png.status_code == 400 and 'id="cover-problem"' in not_png.text


def test_a_course_with_description_cover_and_limit_is_sold_with_them(console: Console) -> None:
    saved = console.post("/admin/courses/new", form(id="rust-basics", plan="subscription", period_days="30",
                                                    download_limit="5", description="第一段。\r\n\r\nSecond paragraph."),
                         files={"cover": ("cover.png", PNG, "image/png")})
    assert saved.status_code == 303, saved.text[:500]
    editor = console.page("/admin/courses/rust-basics/edit")
    assert 'id="buy-link" readonly value="' in editor and "/buy/rust-basics" in editor
    assert 'id="cover-preview"' in editor and 'value="5"' in editor and "Second paragraph." in editor
    assert "订阅（按期付费，不会自动续费）" in console.page("/admin/courses")

    buy = requests.get(console.shop.url + "/buy/rust-basics", timeout=15).text
    assert 'id="cover"' in buy and "<p>第一段。</p>" in buy and 'id="no-auto-renew"' in buy and "needs WeChat" in buy
    cover = requests.get(console.shop.url + "/courses/rust-basics/cover", timeout=15)
    assert cover.status_code == 200 and cover.headers["Content-Type"] == "image/png" and cover.content == PNG
    assert requests.get(console.shop.url + "/courses/cpp-primer-5th/cover", timeout=15).status_code == 404

    # Dropping the cover and the limit.
    again = console.post("/admin/courses/rust-basics/edit", form(plan="subscription", period_days="30",
                                                                 drop_cover="on", description="短 short"))
    assert again.status_code == 303
    assert requests.get(console.shop.url + "/courses/rust-basics/cover", timeout=15).status_code == 404
    audit = console.page("/admin/audit?kind=course")
    assert "Course details saved" in audit and "Download limit changed" in audit
