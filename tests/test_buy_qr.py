"""The course editor shows the buy page's QR code for posters, and gives it as an SVG file that decodes back to
the buy link; the buy page says whom to ask for a refund when the creator set no refund terms."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import requests
from test_admin import Console, console  # noqa: F401 (the console fixture)
from test_qr import rasterise


def decoded(svg: str, tmp_path: Path) -> str:
    zbarimg = shutil.which("zbarimg")
    assert zbarimg, "zbarimg (Debian's zbar-tools) is needed to read QR codes back"
    png = tmp_path / "buy-qr.png"
    rasterise(svg).save(png)
    result = subprocess.run([zbarimg, "--quiet", "--raw", str(png)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_editor_shows_and_offers_the_buy_pages_qr_code(console: Console, tmp_path: Path) -> None:
    editor = console.page("/admin/courses/cpp-primer-5th/edit")
    link = re.search(r'id="buy-link" readonly value="([^"]+)"', editor).group(1)  # type: ignore[union-attr]
    assert link.endswith("/buy/cpp-primer-5th")
    shown = re.search(r'id="buy-qr" src="data:image/svg\+xml;base64,([^"]+)"', editor)
    assert shown and decoded(base64.b64decode(shown.group(1)).decode(), tmp_path) == link

    download = console.get("/admin/courses/cpp-primer-5th/buy-qr.svg")
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("image/svg+xml")
    assert download.headers["Content-Disposition"] == 'attachment; filename="buy-cpp-primer-5th.svg"'
    assert decoded(download.text, tmp_path) == link
    assert console.get("/admin/courses/no-such-course/buy-qr.svg").status_code == 404
    assert 'id="buy-qr"' not in console.page("/admin/courses/new")


def test_without_refund_terms_the_buy_page_says_whom_to_ask(console: Console) -> None:
    buy = requests.get(console.shop.url + "/buy/cpp-primer-5th", timeout=15).text
    assert 'id="refund-terms"' in buy and "Contact the seller with your order id." in buy
