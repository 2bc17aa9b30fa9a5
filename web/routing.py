"""What every app a process makes shares: URL builders compiled on first use, and compiled templates.

werkzeug compiles two Python functions for every rule as it is added (one to build the URL, one that
also appends unknown arguments as a query string). Our app has about 160 rules and builds URLs for a
handful of them in a typical process, so making the app spent most of its time compiling functions
nobody called: every gunicorn worker's boot, every `lbpay` command and every test's app paid it.
Matching requests never uses the builders; ``Rule.build`` is the only caller.

Jinja compiles each template to Python the first time an app renders it, and every app has its own
environment: a process that makes several apps (the tests, the embedded sandbox beside the shop)
compiled the same templates again for each. ``ProcessTemplateCache`` keeps the compiled code for the
process, keyed by the template's name and checked against its source, as Jinja's bytecode caches are.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from flask import Flask
from jinja2.bccache import Bucket, BytecodeCache
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


class ProcessTemplateCache(BytecodeCache):
    """Jinja's compiled templates kept in memory for every app of this process.

    Jinja checks each entry against a checksum of the template's source, so an edited template is
    compiled again, and it writes an entry only after a compile: a dict's get and set are enough.
    """

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        compiled = self._compiled.get(bucket.key)
        if compiled is not None:
            bucket.bytecode_from_string(compiled)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()


TEMPLATES = ProcessTemplateCache()


class App(Flask):
    """Flask with lazily compiled URL builders and the process's compiled templates (see the module's docstring)."""

    url_rule_class = LazyBuilderRule
    jinja_options = {"bytecode_cache": TEMPLATES}
