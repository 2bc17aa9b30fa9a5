"""What every app a process makes shares: parsed URL rules, URL builders compiled on first use, compiled templates.

werkzeug compiles two Python functions for every rule as it is added (one to build the URL, one that
also appends unknown arguments as a query string). Our app has about 180 rules and builds URLs for a
handful of them in a typical process, so making the app spent most of its time compiling functions
nobody called: every gunicorn worker's boot, every `lbpay` command and every test's app paid it.
Matching requests never uses the builders; ``Rule.build`` is the only caller.

Then it parses each rule's text into the parts its matcher walks: after the builders, that was most
of what making an app cost (about 15 ms of 40), and the same texts give the same parts in every app
of a process. ``LazyBuilderRule`` keeps the parse per rule text and map converters; each rule still
gets converter objects of its own, bound to its own map.

Jinja compiles each template to Python the first time an app renders it, and every app has its own
environment: a process that makes several apps (the tests, the embedded sandbox beside the shop)
compiled the same templates again for each. ``ProcessTemplateCache`` keeps the compiled code for the
process, keyed by the template's name and checked against its source, as Jinja's bytecode caches are.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

from flask import Flask
from jinja2.bccache import Bucket, BytecodeCache
from werkzeug.routing import BaseConverter, Rule
from werkzeug.routing.rules import RulePart


# What werkzeug's Rule._parse_rule made of a rule text with a map's converter classes: its parts
# (read, never changed, by the matcher), the trace the builders follow, and each converter's arguments.
Parsed = tuple[list[RulePart], list[tuple[bool, str]], list[tuple[str, str, tuple[Any, ...], dict[str, Any]]]]
_PARSED: dict[tuple[str, tuple[tuple[str, type], ...]], Parsed] = {}


class LazyBuilderRule(Rule):
    """werkzeug's ``Rule``, parsed once per process and text; each builder compiled on its first call."""

    def _parse_rule(self, rule: str) -> list[RulePart]:  # type: ignore[override]
        key = (rule, tuple(self.map.converters.items()))  # type: ignore[union-attr]
        parsed = _PARSED.get(key)
        if parsed is None:
            trace_from = len(self._trace)
            asked: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = []
            self._asked_converters = asked
            try:
                parts = list(super()._parse_rule(rule))
            finally:
                del self._asked_converters
            parsed = _PARSED[key] = (parts, self._trace[trace_from:], asked)
            return parts
        parts, trace, converters = parsed
        self._trace.extend(trace)
        for variable, name, args, kwargs in converters:
            self._converters[variable] = self.get_converter(variable, name, args, kwargs)
            self.arguments.add(variable)
        return parts

    def get_converter(self, variable_name: str, converter_name: str, args: tuple[Any, ...],
                      kwargs: Mapping[str, Any]) -> BaseConverter:
        asked = getattr(self, "_asked_converters", None)
        if asked is not None:
            asked.append((variable_name, converter_name, args, dict(kwargs)))
        return super().get_converter(variable_name, converter_name, args, kwargs)

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's answer for each view and hook, worked out once per function instead of on every call.

        Flask asks whether a function is a coroutine function each time it calls a view or a
        request hook: ten times on a status poll, a few microseconds each. The answer never changes.
        """
        sync = self._sync.get(func)
        if sync is None:
            sync = self._sync[func] = super().ensure_sync(func)
        return sync
