"""The QR code we draw ourselves is a real QR code: a phone's decoder reads the code_url back."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from billing.orders import qr_svg

PATH_RUN = re.compile(r"M(\d+),(\d+)h(\d+)v1h-\d+z")


def rasterise(svg: str, scale: int = 8) -> Image.Image:
    """Paint the SVG's runs of dark modules onto a white image, as a screen would show them."""
    size = int(re.search(r'viewBox="0 0 (\d+) \d+"', svg).group(1))
    image = Image.new("L", (size * scale, size * scale), 255)
    for x, y, width in ((int(a), int(b), int(c)) for a, b, c in PATH_RUN.findall(svg)):
        image.paste(0, (x * scale, y * scale, (x + width) * scale, (y + 1) * scale))
    return image


@pytest.mark.parametrize("text", [
    "weixin://wxpay/bizpayurl?pr=NwY5Mz9",
    "weixin://wxpay/bizpayurl?pr=AAkj1AAlzz",
])
def test_the_svg_decodes_to_the_code_url(text: str, tmp_path: Path) -> None:
    zbarimg = shutil.which("zbarimg")
    assert zbarimg, "zbarimg (Debian's zbar-tools) is needed to read QR codes back; make system-deps installs it"
    png = tmp_path / "qr.png"
    rasterise(qr_svg(text)).save(png)
    result = subprocess.run([zbarimg, "--quiet", "--raw", str(png)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == text
