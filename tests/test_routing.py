"""The app's URL rules build exactly the URLs werkzeug's own rules build, compiled only when first asked;
its templates are compiled once per process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import render_template
from werkzeug.routing import Map, Rule

from app import create_app
from web.routing import TEMPLATES, App, LazyBuilderRule, ProcessTemplateCache

SAMPLES = {"integer": 7, "path": "ch1/lesson.md", "default": "cpp-primer-5th", "string": "cpp-primer-5th"}


def sample_values(rule: Rule) -> dict[str, Any]:
    """A value for each of the rule's arguments, by its converter."""
    converters = getattr(rule, "_converters", {})
    return {name: SAMPLES.get(type(converters.get(name)).__name__.removesuffix("Converter").lower(),
                              SAMPLES["default"]) for name in rule.arguments}


def test_every_rule_of_the_app_is_a_lazy_one(tmp_path: Path) -> None:
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SCHEDULER": "off",
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'lbpay.db'}"})
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 100 and all(isinstance(rule, LazyBuilderRule) for rule in rules)


def test_lazy_rules_build_what_werkzeugs_rules_build(tmp_path: Path) -> None:
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SCHEDULER": "off",
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'lbpay.db'}"})
    rules = list(app.url_map.iter_rules())
    eager = Map([Rule(r.rule, endpoint=r.endpoint, methods=r.methods, defaults=r.defaults) for r in rules])
    eager_urls = eager.bind("shop.example", "/")
    lazy_urls = app.url_map.bind("shop.example", "/")
    for rule in rules:
        values = sample_values(rule)
        for extra in ({}, {"page": 2, "q": "学习 buddy"}):  # the second goes through the query-string builder
            assert lazy_urls.build(rule.endpoint, {**values, **extra}, method=next(iter(rule.methods or {"GET"}))) \
                == eager_urls.build(rule.endpoint, {**values, **extra}, method=next(iter(rule.methods or {"GET"}))), rule


def test_a_builder_is_compiled_on_its_first_use_and_only_then(monkeypatch: Any) -> None:
    compiled: list[bool] = []
    werkzeugs = Rule._compile_builder

    def counting(self: Rule, append_unknown: bool = True) -> Any:
        compiled.append(append_unknown)
        return werkzeugs(self, append_unknown)

    monkeypatch.setattr(Rule, "_compile_builder", counting)  # a spy on werkzeug's compiler, nothing replaced
    urls = Map([LazyBuilderRule("/courses/<course_id>", endpoint="course"),
                LazyBuilderRule("/orders/<int:n>", endpoint="order")]).bind("shop.example", "/")
    assert compiled == []
    assert urls.build("course", {"course_id": "rust-monthly"}) == "/courses/rust-monthly"
    assert urls.build("course", {"course_id": "cpp"}) == "/courses/cpp"
    assert urls.build("course", {"course_id": "cpp", "a": "1"}) == "/courses/cpp?a=1"
    assert compiled == [True]  # url_for's builder (unknown arguments go to the query string), once
    assert urls.build("course", {"course_id": "cpp"}, append_unknown=False) == "/courses/cpp"
    assert compiled == [True, False]
    assert urls.build("order", {"n": 3}) == "/orders/3" and compiled == [True, False, True]


def _counting_app(folder: Path, cache: ProcessTemplateCache, compiled: list[str]) -> App:
    """An App over ``folder``'s templates that notes every template Jinja compiles from source."""
    app = App(__name__, template_folder=str(folder))
    app.jinja_env.bytecode_cache = cache
    compile_source = app.jinja_env.compile

    def compile_noted(source: Any, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(name))
        return compile_source(source, name, *args, **kwargs)

    app.jinja_env.compile = compile_noted  # type: ignore[method-assign]
    return app


def test_a_second_app_of_the_process_renders_without_compiling_and_an_edit_is_compiled_again(tmp_path: Path) -> None:
    assert App.jinja_options["bytecode_cache"] is TEMPLATES  # every app of the process shares one
    (tmp_path / "hello.html").write_text("<p>{{ who }} 你好</p>", encoding="utf-8")
    cache, compiled = ProcessTemplateCache(), []
    for who in ("first", "second"):
        app = _counting_app(tmp_path, cache, compiled)
        with app.app_context():
            assert render_template("hello.html", who=who) == f"<p>{who} 你好</p>"
    assert compiled == ["hello.html"]  # the second app took the first one's code

    (tmp_path / "hello.html").write_text("<p>{{ who }} 再见</p>", encoding="utf-8")
    app = _counting_app(tmp_path, cache, compiled)
    with app.app_context():
        assert render_template("hello.html", who="third") == "<p>third 再见</p>"
    assert compiled == ["hello.html", "hello.html"]  # the source changed: compiled again


def test_a_second_app_reuses_the_parse_and_its_rules_match_as_werkzeugs_own(tmp_path: Path, monkeypatch: Any) -> None:
    settings = {"SCHEDULER": "off", "DATABASE_URL": f"sqlite:///{tmp_path / 'lbpay.db'}"}
    first = create_app({"INSTANCE_PATH": str(tmp_path / "one"), **settings})
    parsed: list[str] = []
    werkzeugs_parse = Rule._parse_rule

    def counting(self: Rule, rule: str) -> Any:
        parsed.append(rule)
        return werkzeugs_parse(self, rule)

    monkeypatch.setattr(Rule, "_parse_rule", counting)  # a spy on werkzeug's parser, nothing replaced
    second = create_app({"INSTANCE_PATH": str(tmp_path / "two"), **settings})
    assert parsed == []
    monkeypatch.undo()
    fresh = Map([Rule(r.rule, endpoint=r.endpoint, methods=r.methods, defaults=r.defaults)
                 for r in second.url_map.iter_rules()])
    werkzeugs = {(r.rule, r.endpoint): r for r in fresh.iter_rules()}
    firsts = {(r.rule, r.endpoint): r for r in first.url_map.iter_rules()}
    for rule in second.url_map.iter_rules():
        own = werkzeugs[(rule.rule, rule.endpoint)]
        assert (rule._parts, rule._trace, rule.arguments) == (own._parts, own._trace, own.arguments), rule
        assert {k: type(v) for k, v in rule._converters.items()} == {k: type(v) for k, v in own._converters.items()}
        for name, converter in rule._converters.items():  # converters of its own, bound to its own map
            assert converter.map is second.url_map and converter is not firsts[(rule.rule, rule.endpoint)]._converters[name]
    matching = second.url_map.bind("shop.example", "/")
    fresh_matching = fresh.bind("shop.example", "/")
    for rule in second.url_map.iter_rules():
        method = next(iter(sorted(rule.methods or {"GET"})))
        path = fresh_matching.build(rule.endpoint, sample_values(rule), method=method)
        assert matching.match(path, method=method) == fresh_matching.match(path, method=method), path


def test_a_functions_sync_form_is_worked_out_once_and_an_async_view_still_goes_through_flask(monkeypatch: Any) -> None:
    import flask.app

    app = App("once")
    asked: list[Any] = []
    flasks_check = flask.app.iscoroutinefunction

    def counting(func: Any) -> bool:
        asked.append(func)
        return flasks_check(func)

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting)  # a spy on Flask's check, nothing replaced

    def view() -> str:
        return "ok"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view
    assert asked == [view]

    async def coroutine_view() -> str:
        return "ok"

    wrapped: list[Any] = []
    monkeypatch.setattr(App, "async_to_sync", lambda self, func: wrapped.append(func) or (lambda: "sync"))
    assert app.ensure_sync(coroutine_view)() == "sync"
    assert wrapped == [coroutine_view]
