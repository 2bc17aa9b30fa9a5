"""The flags our browser tests give Chromium: Playwright's own features stay off, and no WebUI popup is preloaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from servers import OMNIBOX_POPUP_FEATURES

pytestmark = pytest.mark.browser


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        todo += children
    return found


def _browser_command_line() -> list[str]:
    """The command line of this test process's Chromium browser process (not a renderer or helper)."""
    for pid in _descendants(os.getpid()):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if args and args[0].endswith("chromium") and not any(a.startswith("--type=") for a in args):
            return args
    raise AssertionError("no Chromium browser process under this test process")


def test_the_last_disable_features_keeps_every_feature_playwright_turns_off(browser: Any) -> None:
    lists = [a.split("=", 1)[1].split(",") for a in _browser_command_line() if a.startswith("--disable-features=")]
    assert len(lists) >= 2, lists  # Playwright's, then ours
    last = set(lists[-1])
    for earlier in lists[:-1]:
        assert set(earlier) <= last, f"Chromium reads only the last list; lost: {set(earlier) - last}"
    assert set(OMNIBOX_POPUP_FEATURES) <= last


def test_a_new_context_preloads_no_omnibox_popup(browser: Any) -> None:
    context = browser.new_context()
    try:
        context.new_page().set_content("<p>hi</p>")
        session = browser.new_browser_cdp_session()
        urls = [target["url"] for target in session.send("Target.getTargets")["targetInfos"]]
        session.detach()
    finally:
        context.close()
    assert not [u for u in urls if "omnibox-popup" in u], urls
