"""The size limits the codebase keeps (docs/ARCHITECTURE.md): small modules of one concern,
short functions. A module over the limit is split by concern, not squeezed."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60  # lines holding code, the docstring not counted


def _sources():
    for top in ("mouse_pipeline", "stages"):
        yield from sorted((ROOT / top).rglob("*.py"))


def code_lines(node: ast.AST, lines: list[str]) -> int:
    """Lines of a function that hold code, its signature included: not its docstring, blank
    lines or comments (a statement's continuation lines count)."""
    doc: set[int] = set()
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        doc = set(range(first.lineno, first.end_lineno + 1))
    return sum(1 for i in range(node.lineno, node.end_lineno + 1)
               if i not in doc and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#"))


def test_code_lines_counts_code_only():
    src = 'def f():\n    """Doc."""\n\n    # note\n    a = 1\n    return (a +\n            2)\n'
    assert code_lines(ast.parse(src).body[0], src.splitlines()) == 4  # def, a = 1, the return's two lines


def test_no_module_or_function_is_over_the_limits():
    over = []
    for path in _sources():
        src = path.read_text()
        if len(src.splitlines()) > MAX_MODULE_LINES:
            over.append(f"{path.relative_to(ROOT)}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            n = code_lines(node, src.splitlines()) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else 0
            if n > MAX_FUNCTION_LINES:
                over.append(f"{path.relative_to(ROOT)}: {node.name} has {n} lines of code")
    assert not over, "\n".join(over)
