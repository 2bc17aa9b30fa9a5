"""Rules the code keeps that a reviewer could miss: layers, constant-time compares, no SQL built from strings."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
LAYERS = ("billing", "operations", "web", "wechatpay", "alipay", "licensing", "migrations")
TOP = ("app.py", "cli.py", "settings.py", "database.py", "models.py")
OURS = [p for d in LAYERS for p in (ROOT / d).rglob("*.py")] + [ROOT / name for name in TOP]


def imports(path: Path) -> set[str]:
    """The top-level packages a module imports at run time (``if TYPE_CHECKING:`` blocks aside)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package, banned", [
    ("billing", {"flask", "web", "werkzeug", "operations", "app", "cli"}),
    ("operations", {"flask", "web", "werkzeug", "app", "cli"}),
    # Billing turns WeChat's errors into its own (issue 24): web/ never sees the client's types.
    ("web", {"models", "cli", "wechatpay", "alipay"}),
    ("wechatpay", {"flask", "peewee", "models", "billing", "web", "licensing", "alipay"}),
    ("alipay", {"flask", "peewee", "models", "billing", "web", "licensing", "wechatpay"}),
    ("licensing", {"flask", "peewee", "models", "billing", "web", "wechatpay"}),
])
def test_each_layer_imports_only_what_the_plan_allows(package: str, banned: set[str]) -> None:
    for path in (ROOT / package).rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        assert not imports(path) & banned, f"{path.relative_to(ROOT)} imports {imports(path) & banned}"


@pytest.mark.parametrize("module, allowed", [
    ("settings.py", set()),
    ("database.py", {"models", "settings"}),
    ("models.py", set()),
])
def test_the_foundations_import_almost_nothing_of_ours(module: str, allowed: set[str]) -> None:
    ours = {*LAYERS, *(name[:-3] for name in TOP)}
    assert imports(ROOT / module) & ours <= allowed


def test_settings_are_read_in_one_file() -> None:
    """Where is LBPAY_RETENTION_DAYS read? settings.py, and nowhere else reads an LBPAY_ variable."""
    readers = re.compile(r"os\.environ|os\.getenv|\bgetenv\(")
    offenders = [str(path.relative_to(ROOT)) for path in OURS
                 if readers.search(path.read_text()) and "sandbox" not in path.parts]
    # app.py and cli.py hand the environment to settings.load_config; database.py reads the crash-test hook.
    assert sorted(offenders) == ["app.py", "cli.py", "database.py"]
    assert "RETENTION_DAYS" in (ROOT / "settings.py").read_text()


def _module_names(path: Path) -> set[str]:
    """Names in ``path`` bound to one of our modules (``import x``, ``from pkg import module``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            folder = ROOT.joinpath(*node.module.split("."))
            names.update(a.asname or a.name for a in node.names
                         if (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir())
    return names


def test_no_module_globals_are_set_from_outside() -> None:
    """Settings live on the shop's frozen config: no ``module.NAME = value`` and no ``global``."""
    offenders = []
    for path in OURS:
        if "sandbox" in path.parts:
            continue
        modules = _module_names(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Global):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} global")
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                while isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                    target = target.value
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and target.value.id in modules):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {target.value.id}.{target.attr}")
    assert offenders == []


def test_production_code_never_imports_the_sandbox() -> None:
    """Only app.py and cli.py, the composition roots, start the simulator, and only in sandbox mode."""
    for path in OURS:
        if "sandbox" in path.parts or path.name in ("app.py", "cli.py"):
            continue
        modules = {n.module for n in ast.walk(ast.parse(path.read_text()))
                   if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import)
                    for a in n.names}
        assert not any(m.startswith("wechatpay.sandbox") for m in modules), path


SECRET_NAME = re.compile(r"(^|_)(token|sig|signature|secret|hash|mac|digest)($|_)", re.I)


def test_secrets_are_never_compared_with_equals() -> None:
    offenders = []
    for path in OURS:
        if "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                names = [n.id if isinstance(n, ast.Name) else n.attr for n in [node.left, *node.comparators]
                         if isinstance(n, (ast.Name, ast.Attribute))]
                # A comparison with a literal or a module constant is a protocol check, not a secret.
                literal = any(isinstance(n, ast.Constant) or (isinstance(n, ast.Name) and n.id.isupper())
                              for n in [node.left, *node.comparators])
                if any(SECRET_NAME.search(n) for n in names) and not literal:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # Peewee lookups by a stored hash (Model.token_hash == hash(x)) build SQL, not a Python compare.
    allowed = {p for p in offenders if "token_hash ==" in _line(p) or "idempotency_key ==" in _line(p)
               or ".hash" in _line(p) and "select" in _line(p).lower()}
    assert sorted(set(offenders) - allowed) == []


def _line(where: str) -> str:
    path, line = where.rsplit(":", 1)
    return (ROOT / path).read_text().splitlines()[int(line) - 1]


def test_no_sql_is_built_from_formatted_strings() -> None:
    pattern = re.compile(r"(\.raw\(|SQL\(|execute_sql\()\s*f[\"']")
    for path in OURS:
        assert not pattern.search(path.read_text()), path


def test_every_outbound_http_call_has_a_timeout() -> None:
    call = re.compile(r"\b(requests|self\._session|http_session)\.(get|post|request|put|delete|send)\(")
    for path in OURS:
        if "sandbox" in path.parts:
            continue
        text = path.read_text()
        for match in call.finditer(text):
            snippet = text[match.start(): match.start() + 600]
            depth, end = 0, 0
            for i, ch in enumerate(snippet):
                depth += ch == "("
                depth -= ch == ")"
                if depth == 0 and ch == ")":
                    end = i
                    break
            assert "timeout" in snippet[:end], f"{path.relative_to(ROOT)}: {snippet[:80]}"


def test_no_private_key_is_under_version_control_outside_the_public_vectors() -> None:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in listed.splitlines():
        path = ROOT / name
        if name.startswith("tests/vectors/") or not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        assert "PRIVATE KEY-----" not in path.read_text(errors="ignore") or name.endswith((".md", ".py")), name


def test_the_order_ttl_lives_in_one_place() -> None:
    # Issue 24: the shop kept a 30-minute default of its own beside the setting's; now the setting is
    # the one place (LBPAY_ORDER_TTL_MINUTES, read in settings.py) and everything asks the config.
    from dataclasses import fields

    from billing.shop import Shop

    assert "order_ttl" not in {f.name for f in fields(Shop)}
    named = [p.relative_to(ROOT).as_posix() for p in OURS if "ORDER_TTL_MINUTES" in p.read_text()]
    assert named == ["settings.py"]
    uses = [p.relative_to(ROOT).as_posix() for p in OURS if re.search(r"\border_ttl\b", p.read_text())]
    assert sorted(uses) == ["billing/orders.py", "settings.py"], uses


def test_browser_tests_share_the_one_chromium_of_their_process() -> None:
    """A second sync Playwright in a test process fails ("Sync API inside the asyncio loop") once the
    shared `browser` fixture has started one: tests take that fixture, never `servers.chromium` itself."""
    call = "chromium" + "()"  # spelt apart so this file is not a caller
    callers = [path.name for path in (ROOT / "tests").glob("test_*.py") if call in path.read_text()]
    assert callers == []
