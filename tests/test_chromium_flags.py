"""The Chromium our browser tests drive: Debian's headless shell with Playwright's own flags, no window per context."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from servers import CHROMIUM

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
        if args and "chromium" in Path(args[0]).name and not any(a.startswith("--type=") for a in args):
            return args
    raise AssertionError("no Chromium browser process under this test process")


def test_the_browser_is_debians_headless_shell_and_playwrights_feature_list_is_the_only_one(browser: Any) -> None:
    args = _browser_command_line()
    # The wrapper in /usr/bin starts the binary of package chromium-headless-shell, not the full browser.
    assert Path(CHROMIUM).read_text().count("/usr/lib/chromium/chromium-headless-shell") == 1
    assert args[0] == "/usr/lib/chromium/chromium-headless-shell", args[0]
    lists = [a for a in args if a.startswith("--disable-features=")]
    assert len(lists) == 1, lists  # Chromium reads only the last one: a second list would drop Playwright's
    assert "PaintHolding" in lists[0].split("=", 1)[1].split(",")


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
