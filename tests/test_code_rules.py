"""Rules the code keeps that a reviewer could miss: layers, constant-time compares, no SQL built from strings."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
OURS = [p for d in ("billing", "web", "wechatpay", "licensing") for p in (ROOT / d).rglob("*.py")] + [
    ROOT / "app.py", ROOT / "models.py"]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package, banned", [
    ("billing", {"flask", "web", "werkzeug"}),
    ("wechatpay", {"flask", "peewee", "models", "billing", "web", "licensing"}),
    ("licensing", {"flask", "peewee", "models", "billing", "web", "wechatpay"}),
])
def test_each_layer_imports_only_what_the_plan_allows(package: str, banned: set[str]) -> None:
    for path in (ROOT / package).rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        assert not imports(path) & banned, f"{path.relative_to(ROOT)} imports {imports(path) & banned}"


def test_production_code_never_imports_the_sandbox() -> None:
    """Only app.py, the composition root, mounts the simulator, and only in sandbox mode."""
    for path in OURS:
        if "sandbox" in path.parts or path.name == "app.py":
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
