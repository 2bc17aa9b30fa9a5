"""A small mutation tester: change one thing at a time in a module and see whether its tests notice.

A change flips one comparison or boolean, drops one side of an `&` or adds 1 to an integer.

Usage: python tests/mutation.py MODULE.py "PYTEST ARGS" [--only 12,40-88] [--timeout SECONDS] > report.txt
Each mutant is written over the module, the tests run with -x, and the module is put back
(also on Ctrl-C). A mutant "survives" when the tests still pass; a run longer than --timeout
(default 900 s) is stopped and reported as "timeout", neither killed nor survived. The tests are
run once unmutated first (a red start stops the run). The last lines list the survivors.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

SWAPS: dict[type, type] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}


def mutants(tree: ast.Module) -> list[tuple[int, str, ast.AST, ast.AST]]:
    """Every (line, description, node, replacement) this tool knows how to make."""
    found: list[tuple[int, str, ast.AST, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for index, op in enumerate(node.ops):
                swap = SWAPS.get(type(op))
                if swap is not None:
                    ops = list(node.ops)
                    ops[index] = swap()
                    found.append((node.lineno, f"{type(op).__name__} -> {swap.__name__}",
                                  node, ast.Compare(left=node.left, ops=ops, comparators=node.comparators)))
        elif isinstance(node, ast.BoolOp):
            other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            found.append((node.lineno, f"{type(node.op).__name__} -> {type(other).__name__}",
                          node, ast.BoolOp(op=other, values=node.values)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            found.append((node.lineno, "drop not", node, node.operand))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd):
            # peewee's `a & b` in a WHERE: dropping either side loosens the condition
            found.append((node.lineno, "drop right of &", node, node.left))
            found.append((node.lineno, "drop left of &", node, node.right))
        elif isinstance(node, ast.Constant) and type(node.value) is int and node.value not in (0, 1):
            found.append((node.lineno, f"{node.value} -> {node.value + 1}", node, ast.Constant(node.value + 1)))
    return sorted(found, key=lambda m: m[0])


class Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target, self.replacement = target, replacement

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return self.replacement
        return super().visit(node)


def lines_of(text: str) -> set[int]:
    """"12,40-88" -> {12, 40, 41, …, 88}."""
    found: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


def run_tests(tests: list[str], timeout: float) -> str:
    """"killed" (a test failed), "SURVIVED" (all passed) or "timeout"."""
    # its own process group, so that a timeout stops the servers the tests started too
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return "killed" if run.wait(timeout=timeout) != 0 else "SURVIVED"
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        return "timeout"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", type=Path)
    parser.add_argument("tests", type=shlex.split, help="pytest arguments, one string")
    parser.add_argument("--only", type=lines_of, help="lines to mutate, e.g. 12,40-88")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one mutant's tests may take")
    args = parser.parse_args()
    module, tests, only = args.module, args.tests, args.only
    original = module.read_text()
    tree = ast.parse(original)
    found = [m for m in mutants(tree) if only is None or m[0] in only]
    survivors: list[str] = []
    timeouts = 0
    print(f"{module}: {len(found)} mutants; tests: {' '.join(tests)}", flush=True)
    start = time.monotonic()
    if run_tests(tests, args.timeout) != "SURVIVED":  # red without a mutant: every mutant would look killed
        sys.exit(f"the tests do not pass on the unmutated {module}; nothing run")
    print(f"unmutated: the tests pass in {time.monotonic() - start:.1f}s", flush=True)
    try:
        for line, what, node, replacement in found:
            # a fresh parse each time, so that no mutant carries into the next
            fresh = ast.parse(original)
            target = next(n for n in ast.walk(fresh) if ast.dump(n) == ast.dump(node)
                          and getattr(n, "lineno", None) == line
                          and getattr(n, "col_offset", None) == getattr(node, "col_offset", None))
            mutated = ast.unparse(Replace(target, replacement).visit(fresh))
            module.write_text(mutated)
            start = time.monotonic()
            verdict = run_tests(tests, args.timeout)
            source_line = original.splitlines()[line - 1].strip()
            report = f"{verdict:8} line {line:4} {what:22} {time.monotonic() - start:5.1f}s  {source_line[:90]}"
            timeouts += verdict == "timeout"
            if verdict == "SURVIVED":
                survivors.append(report)
            print(report, flush=True)
    finally:
        module.write_text(original)
    killed = len(found) - len(survivors) - timeouts
    print(f"{module}: {len(found)} run, {killed} killed, {len(survivors)} survived, {timeouts} timed out", flush=True)
    for report in survivors:
        print(report, flush=True)


if __name__ == "__main__":
    main()
