"""Course files uploaded from the course editor: a zip becomes the course's folder, files join one of its
folders, the tree is shown with free/ marked and /provider serves the new files at once. Every unsafe or
oversized upload is refused with a 4xx and its reason in words, leaves an audit event, and changes nothing."""

from __future__ import annotations

import fcntl
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Shop
from test_admin import Console, console  # noqa: F401 (the console fixture)

import models
from billing import content_upload

COURSE = "cpp-primer-5th"
PATH = f"/admin/courses/{COURSE}/content"


@pytest.fixture
def content_dir(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    (root / COURSE / "ch0").mkdir(parents=True)
    (root / COURSE / "ch0" / "old.md").write_text("# Old\n")
    return root


@pytest.fixture
def shop_settings(content_dir: Path) -> dict[str, Any]:
    return {"CONTENT_DIR": str(content_dir)}


def make_zip(*entries: tuple[str, bytes] | zipfile.ZipInfo, data: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                archive.writestr(entry, (data or {}).get(entry.filename, b"x"))
            else:
                archive.writestr(*entry)
    return buffer.getvalue()


_TOKENS: dict[int, str] = {}


def post(console: Console, data: dict[str, str], **kw: Any) -> requests.Response:
    """Console.post, with the CSRF token read once per console (each read renders the dashboard)."""
    if id(console) not in _TOKENS:
        _TOKENS[id(console)] = console.token("/admin/")
    return console.session.post(console.url(PATH), data={**data, "csrf_token": _TOKENS[id(console)]},
                                allow_redirects=False, timeout=30, **kw)


def send_zip(console: Console, blob: bytes, name: str = "course.zip") -> requests.Response:
    return post(console, {"mode": "zip"}, files={"files": (name, blob, "application/zip")})


def send_files(console: Console, folder: str, *files: tuple[str, bytes]) -> requests.Response:
    return post(console, {"mode": "files", "folder": folder},
                files=[("files", (name, body, "application/octet-stream")) for name, body in files])


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the content folder (hidden ones too, but for the uploads' lock files), with its bytes."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith(".upload-") and name.endswith(".lock"):
                continue
            path = Path(folder) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def events(action: str) -> list[dict[str, Any]]:
    with models.db.connection_context():
        return [json.loads(e.detail or "{}") for e in models.AuditEvent.select()
                .where(models.AuditEvent.action == action).order_by(models.AuditEvent.id)]


def structure_paths(shop: Shop) -> set[str]:
    tree = shop.get(f"/provider/courses/{COURSE}/structure").json()
    found: set[str] = set()

    def walk(folders: list[dict[str, Any]], files: list[dict[str, Any]]) -> None:
        found.update(f["path"] for f in files)
        for sub in folders:
            walk(sub["folders"], sub["files"])

    walk(tree["exercises"], tree["files"])
    return found


def test_a_zip_becomes_the_course_and_the_provider_serves_it_at_once(console: Console, content_dir: Path) -> None:
    shop = console.shop
    assert structure_paths(shop) == {"ch0/old.md"}  # walked and kept for a minute, as before
    blob = make_zip(("free/intro.md", b"# Welcome\n"), ("ch1/lesson.md", b"# Paid\n"), ("笔记/第一课.md", "中文".encode()),
                    ("__MACOSX/._lesson.md", b"clutter"), ("ch1/.DS_Store", b"clutter"))
    done = send_zip(console, blob)
    assert done.status_code == 303, done.text[done.text.find("upload-problem") - 100:][:800]
    assert done.headers["Location"].endswith(f"/admin/courses/{COURSE}/edit#course-content")

    editor = console.page(f"/admin/courses/{COURSE}/edit")
    assert 'data-path="free/intro.md" data-free="yes"' in editor and 'data-path="ch1/lesson.md" data-free="no"' in editor
    assert "第一课.md" in editor and "old.md" not in editor and "__MACOSX" not in editor
    assert 'id="content-summary"><b>3</b>' in editor and "免费 <span lang=\"en\">free to anyone" in editor
    # The provider's kept walk sees the new folder at once (its identity changed), not a minute later.
    assert structure_paths(shop) == {"free/intro.md", "ch1/lesson.md", "笔记/第一课.md"}
    free = shop.session.get(f"{shop.url}/provider/content/{COURSE}/free/intro.md", timeout=15)
    assert free.status_code == 200 and free.content == b"# Welcome\n"
    assert shop.session.get(f"{shop.url}/provider/content/{COURSE}/ch0/old.md", timeout=15).status_code == 404
    assert shop.session.get(f"{shop.url}/provider/content/{COURSE}/ch1/lesson.md", timeout=15).status_code == 401
    [event] = events("course.content_uploaded")
    assert (event["course"], event["mode"], event["files"], event["bytes"]) == (COURSE, "zip", 3, 23)
    # Nothing is left beside the course: no staging folder, no old tree.
    assert sorted(p.name for p in content_dir.iterdir() if not p.name.endswith(".lock")) == [COURSE]


def test_files_join_a_folder_and_replace_one_of_the_same_name(console: Console, content_dir: Path) -> None:
    shop = console.shop
    before = (content_dir / COURSE / "ch0" / "old.md").stat().st_ino
    # What an upload that crashed midway left: swept by the next upload of that course, never of another.
    (content_dir / f".staging-{COURSE}.0123456789ab" / "ch1").mkdir(parents=True)
    (content_dir / f".staging-{COURSE}-extra.0123456789ab").mkdir()
    assert send_files(console, "free", ("intro.md", b"# Free\n"), ("试读.pdf", b"%PDF")).status_code == 303
    assert sorted(p.name for p in content_dir.iterdir() if p.name.startswith(".staging")) == [
        f".staging-{COURSE}-extra.0123456789ab"]
    assert send_files(console, "ch0", ("old.md", b"# New words\n")).status_code == 303
    assert send_files(console, "", ("README.md", b"# Top\n")).status_code == 303
    assert snapshot(content_dir / COURSE) == {"ch0/old.md": b"# New words\n", "free/intro.md": b"# Free\n",
                                              "free/试读.pdf": b"%PDF", "README.md": b"# Top\n"}
    assert (content_dir / COURSE / "ch0" / "old.md").stat().st_ino != before
    assert structure_paths(shop) == {"ch0/old.md", "free/intro.md", "free/试读.pdf", "README.md"}
    editor = console.page(f"/admin/courses/{COURSE}/edit")
    assert 'data-path="free/试读.pdf" data-free="yes"' in editor and 'data-path="README.md" data-free="no"' in editor
    assert [e["folder"] for e in events("course.content_uploaded")] == ["free", "ch0", None]


def symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("ch1/passwd")
    info.external_attr = 0o120777 << 16
    return info


def encrypted_zip() -> bytes:
    """A zip whose entry says it is encrypted (zipfile cannot write one: the flag is set in the bytes)."""
    blob = bytearray(make_zip(("ch1/secret.md", b"x")))
    for header, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = blob.index(header) + offset
        blob[at] |= 0x1
    return bytes(blob)


def device_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("ch1/null")
    info.external_attr = 0o020666 << 16
    return info


def lying_zip() -> bytes:
    """A zip whose second entry declares fewer bytes than it holds: found while writing, after the first."""
    blob = bytearray(make_zip(("ch1/a.md", b"fine\n"), ("ch1/b.md", b"y" * 5000)))
    central = blob.rindex(b"PK\x01\x02")  # the last central directory header: ch1/b.md's
    blob[central + 24:central + 28] = (10).to_bytes(4, "little")
    return bytes(blob)


ZIP_REFUSALS = [
    ("zip-slip", make_zip(("../../evil.md", b"x")), 400, "parent_path"),
    ("slip inside", make_zip(("ch1/../../evil.md", b"x")), 400, "parent_path"),
    ("absolute", make_zip(("/etc/evil.md", b"x")), 400, "absolute_path"),
    ("drive letter", make_zip(("C:/evil.md", b"x")), 400, "absolute_path"),
    ("backslash", make_zip(("ch1\\..\\evil.md", b"x")), 400, "bad_name"),
    ("control character", make_zip(("ch1/a\x07.md", b"x")), 400, "bad_name"),
    ("symlink", make_zip(("ch1/ok.md", b"x"), symlink_entry(), data={"ch1/passwd": b"/etc/passwd"}), 400, "link"),
    ("device", make_zip(device_entry()), 400, "special"),
    ("encrypted", encrypted_zip(), 400, "encrypted"),
    ("not a zip", b"this is not a zip at all", 400, "not_zip"),
    ("empty", make_zip(("ch1/", b"")), 400, "empty"),
    ("only clutter", make_zip(("__MACOSX/._x", b"x")), 400, "empty"),
    ("too deep", make_zip(("/".join(["d"] * 20) + "/x.md", b"x")), 400, "too_deep"),
    ("file and folder", make_zip(("ch1", b"x"), ("ch1/a.md", b"x")), 400, "conflict"),
    ("lies about its size", lying_zip(), 400, None),
]


def test_every_unsafe_upload_is_refused_with_a_reason_an_event_and_nothing_changed(
        console: Console, content_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = console.shop
    before = snapshot(content_dir)
    cases: list[tuple[str, Any, int, str | None]] = list(ZIP_REFUSALS)
    for name, blob, status, reason in cases:
        answer = send_zip(console, blob)
        assert answer.status_code == status, (name, answer.status_code, answer.text[:300])
        assert 'id="upload-problem"' in answer.text and "Nothing was changed." in answer.text, name
        said = events("course.content_refused")[-1]
        assert reason is None or (said["reason"] == reason and f'data-reason="{reason}"' in answer.text), (name, said)
        assert said["reason"] in ("size_lies", "not_zip") if reason is None else True
        assert snapshot(content_dir) == before, name  # nothing half-written, no staging left behind

    for name, folder, files, reason in [
        ("slip in a name", "", [("../evil.md", b"x")], "parent_path"),
        ("absolute name", "", [("/tmp/evil.md", b"x")], "absolute_path"),
        ("slip in the folder", "../..", [("a.md", b"x")], "bad_folder"),
        ("backslash folder", "ch1\\..", [("a.md", b"x")], "bad_folder"),
        ("into a file", "ch0/old.md", [("a.md", b"x")], "conflict"),
        ("over a folder", "", [("ch0", b"x")], "conflict"),
    ]:
        answer = send_files(console, folder, *files)
        assert answer.status_code == 400 and f'data-reason="{reason}"' in answer.text, (name, answer.text[:300])
        assert events("course.content_refused")[-1]["reason"] == reason, name
        assert snapshot(content_dir) == before, name

    no_mode = post(console, {"mode": "tar"}, files={"files": ("a.zip", make_zip(("a.md", b"x")), "application/zip")})
    assert no_mode.status_code == 400 and 'data-reason="bad_mode"' in no_mode.text
    no_file = post(console, {"mode": "zip"})
    assert no_file.status_code == 400 and 'data-reason="no_file"' in no_file.text
    two = post(console, {"mode": "zip"}, files=[("files", ("a.zip", make_zip(("a.md", b"x")))),
                                                     ("files", ("b.zip", make_zip(("b.md", b"x"))))])
    assert two.status_code == 400 and 'data-reason="one_zip"' in two.text

    # The limits: files, unpacked bytes, and the request itself (stopped before it is read).
    monkeypatch.setattr(content_upload, "ENTRIES_MAX", 3)
    many = send_zip(console, make_zip(*[(f"ch1/{n}.md", b"x") for n in range(4)]))
    assert many.status_code == 413 and 'data-reason="too_many"' in many.text
    monkeypatch.setattr(content_upload, "UNPACKED_MAX_BYTES", 1000)
    bomb = send_zip(console, make_zip(("ch1/zeros.bin", bytes(100_000))))
    assert len(make_zip(("ch1/zeros.bin", bytes(100_000)))) < 1000  # small to send, large unpacked
    assert bomb.status_code == 413 and 'data-reason="unpacked_too_big"' in bomb.text
    monkeypatch.setattr(content_upload, "UPLOAD_MAX_BYTES", 10_000)
    big = send_files(console, "", ("big.bin", os.urandom(200_000)))
    assert big.status_code == 413 and 'data-reason="too_big"' in big.text
    assert events("course.content_refused")[-1]["reason"] == "too_big"
    assert snapshot(content_dir) == before

    # Another upload to the same course in flight: refused, not queued.
    monkeypatch.undo()
    with open(content_dir / f".upload-{COURSE}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = send_zip(console, make_zip(("a.md", b"x")))
        assert busy.status_code == 409 and 'data-reason="busy"' in busy.text
    assert snapshot(content_dir) == before
    assert structure_paths(shop) == {"ch0/old.md"}


def test_an_anonymous_upload_is_sent_to_sign_in_and_writes_nothing(shop: Shop, content_dir: Path) -> None:
    before = snapshot(content_dir)
    anonymous = Console(shop)
    shop.app.config["SESSION_COOKIE_SECURE"] = False
    answer = anonymous.post(PATH, {"mode": "zip"}, files={"files": ("a.zip", make_zip(("a.md", b"x")))})
    assert answer.status_code == 303 and "/admin/login" in answer.headers["Location"]
    assert snapshot(content_dir) == before and events("course.content_refused") == []
