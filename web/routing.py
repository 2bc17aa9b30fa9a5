"""URL rules whose builders are compiled when ``url_for`` first needs them, not when the app is made.

werkzeug compiles two Python functions for every rule as it is added (one to build the URL, one that
also appends unknown arguments as a query string). Our app has about 160 rules and builds URLs for a
handful of them in a typical process, so making the app spent most of its time compiling functions
nobody called: every gunicorn worker's boot, every `lbpay` command and every test's app paid it.
Matching requests never uses the builders; ``Rule.build`` is the only caller.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from flask import Flask
from werkzeug.routing import Rule


class LazyBuilderRule(Rule):
    """werkzeug's ``Rule``; each of its two builders is compiled on its first call and then kept."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        compile_now = super()._compile_builder
        compiled: list[Callable[..., tuple[str, str]]] = []
        lock = threading.Lock()

        def build(rule: Rule, **values: Any) -> tuple[str, str]:
            if not compiled:
                with lock:
                    if not compiled:
                        compiled.append(compile_now(append_unknown))
            return compiled[0](rule, **values)

        return build


class App(Flask):
    """Flask with rules whose URL builders are compiled lazily (see the module's docstring)."""

    url_rule_class = LazyBuilderRule
