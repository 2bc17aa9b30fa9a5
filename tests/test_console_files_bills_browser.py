"""The course editor's files and the bills page's actions, walked in Chromium on a phone (390×844) and a desktop
(1280×800), with JavaScript on and off; axe-core checks each page, and nothing scrolls sideways."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from conftest import Shop
from playwright.sync_api import Browser, expect
from test_admin import paid_order
from screens import shot
from test_admin_browser import creator  # noqa: F401 (the creator fixture)
from test_bills_actions import plant
from test_console_browser import SIZES, axe_check, fits, open_console
from test_content_upload import content_dir, shop_settings  # noqa: F401  (fixtures: the course folder of one old file)

pytestmark = pytest.mark.browser
COURSE = "cpp-primer-5th"


def zip_file(folder: Path, name: str, *entries: tuple[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, body in entries:
            archive.writestr(entry, body)
    path = folder / name
    path.write_bytes(buffer.getvalue())
    return path


def test_a_creator_uploads_course_files_and_sees_the_tree(browser: Browser, creator: Shop, tmp_path: Path) -> None:
    good = zip_file(tmp_path, "course.zip", ("free/第一课 intro.md", b"# Welcome\n"),
                    ("ch1/lesson-with-a-rather-long-file-name-that-must-wrap-on-a-phone.md", b"# Paid\n"),
                    ("ch1/video/part1.mp4", b"\x00" * 2048), ("ch2/exercise.py", b"print('hi')\n"))
    slip = zip_file(tmp_path, "slip.zip", ("../../../etc/cron.d/evil", b"x"))
    extra = tmp_path / "试读 sample.pdf"
    extra.write_bytes(b"%PDF-1.4\n")
    for javascript in (True, False):
        for size in SIZES:
            suffix = size if javascript else f"{size}-nojs"
            context, page, problems = open_console(browser, creator, size, javascript)
            page.on("dialog", lambda dialog: dialog.accept())
            try:
                page.goto(f"/admin/courses/{COURSE}/edit")
                expect(page.locator("#content-summary")).to_be_visible()  # the first walk's ch0/old.md, or the last's
                page.set_input_files("#upload-zip", str(good))
                page.click("#upload-zip-form button[type=submit]")
                expect(page.locator(".flash")).to_contain_text("The zip replaced the course's files: 4 file(s)")
                tree = page.locator("#content-tree")
                expect(tree.locator('li[data-path="free/第一课 intro.md"]')).to_have_attribute("data-free", "yes")
                expect(tree.locator('li[data-path="ch1/video/part1.mp4"]')).to_have_attribute("data-free", "no")
                expect(tree.locator('li[data-path="ch0/old.md"]')).to_have_count(0)
                expect(tree.locator('li.tree-folder[data-path="free"] .badge')).to_contain_text("免费")

                page.set_input_files("#upload-files", str(extra))
                page.fill("#upload-folder", "free")
                page.click("#upload-files-form button[type=submit]")
                expect(page.locator(".flash")).to_contain_text("Files added: 1 file(s)")
                expect(page.locator('#content-tree li[data-path="free/试读 sample.pdf"]')).to_have_attribute(
                    "data-free", "yes")
                expect(page.locator("#content-summary b")).to_have_text("5")
                page.locator("#course-content").scroll_into_view_if_needed()
                fits(page, size)
                axe_check(page)
                if javascript:
                    shot(page, f"console-course-files-{suffix}.png")

                page.set_input_files("#upload-zip", str(slip))
                page.click("#upload-zip-form button[type=submit]")
                problem = page.locator("#upload-problem")
                expect(problem).to_have_attribute("data-reason", "parent_path")
                expect(problem).to_contain_text("Nothing was changed.")
                expect(page.locator("#content-summary b")).to_have_text("5")
                fits(page, size)
                axe_check(page)
                if javascript:
                    page.locator("#upload-problem").scroll_into_view_if_needed()
                    shot(page, f"console-course-files-refused-{suffix}.png")
                # The refusal is a 4xx page, which Chromium reports as a failed load; nothing else may go wrong.
                assert [p for p in problems if "status of 4" not in p] == []
            finally:
                context.close()


def test_a_creator_settles_bill_differences_with_their_actions(browser: Browser, creator: Shop) -> None:
    for javascript in (True, False):
        for size in SIZES:
            suffix = size if javascript else f"{size}-nojs"
            lost = creator.order()
            creator.sandbox.control("POST", "faults", {"notify": {"mode": "drop"}})  # its notification is lost
            creator.sandbox.pay(lost["out_trade_no"])
            creator.sandbox.control("DELETE", "faults")
            licensed = plant(creator, "paid_not_licensed", lost["out_trade_no"], wechat_fen=9900)
            stranger = plant(creator, "paid_not_licensed", f"LB20261203STRANGER{size[0]}{int(javascript)}",
                             wechat_fen=4200)
            refunded = paid_order(creator)
            plant(creator, "refund_missing_here", refunded["out_trade_no"], out_refund_no=f"MP2026{size}{javascript}",
                  wechat_fen=9900)
            context, page, problems = open_console(browser, creator, size, javascript)
            try:
                page.goto("/admin/bills")
                expect(page.locator(f"#issue-license-{licensed} button")).to_be_visible()
                expect(page.locator("form.bill-action[id^=adopt-refund-]").first).to_be_visible()
                fits(page, size)
                axe_check(page)
                if javascript:
                    shot(page, f"console-bills-actions-{suffix}.png")

                page.click(f"#issue-license-{licensed} button")
                expect(page.locator(".flash")).to_contain_text("WeChat confirmed the payment; the license is issued.")
                expect(page.locator(f"#difference-{licensed}")).to_have_count(1)
                settled = page.locator("tr.bill-difference.settled", has=page.locator(f"#difference-{licensed}"))
                expect(settled).to_contain_text("已处理 Settled")

                page.click(f"#issue-license-{stranger} button")
                problem = page.locator("#action-problem")
                expect(problem).to_have_attribute("data-reason", "not_our_order")
                expect(problem).to_contain_text("refund it in the merchant platform")
                fits(page, size)
                axe_check(page)
                if javascript:
                    shot(page, f"console-bills-action-refused-{suffix}.png")
                # The refusal is a 4xx page, which Chromium reports as a failed load; nothing else may go wrong.
                assert [p for p in problems if "status of 4" not in p] == []
            finally:
                context.close()
