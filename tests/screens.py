"""Screenshots of our pages for docs/screenshots, taken only when LBPAY_SCREENSHOTS names a folder.

`make screenshots` sets it (LBPAY_SCREENSHOTS=docs/screenshots). In any other run the browser
tests only assert what they check: a full-page screenshot costs Chromium about half a CPU-second
to paint and encode, and nobody looks at one left in a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FOLDER = os.environ.get("LBPAY_SCREENSHOTS") or None


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Save ``page`` as ``name`` in the screenshot folder, when one is asked for."""
    if FOLDER is None:
        return
    folder = Path(FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=full_page)
