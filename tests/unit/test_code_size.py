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


def code_lines(node: ast.AST) -> int:
    """Lines of a function's body that hold code (not its docstring, blank lines or comments)."""
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return len({n.lineno for stmt in body for n in ast.walk(stmt) if hasattr(n, "lineno")})


def test_code_lines_counts_code_only():
    tree = ast.parse('def f():\n    """Doc."""\n\n    # note\n    a = 1\n    return (a +\n            2)\n')
    assert code_lines(tree.body[0]) == 3


def test_no_module_or_function_is_over_the_limits():
    over = []
    for path in _sources():
        src = path.read_text()
        if len(src.splitlines()) > MAX_MODULE_LINES:
            over.append(f"{path.relative_to(ROOT)}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node) > MAX_FUNCTION_LINES:
                over.append(f"{path.relative_to(ROOT)}: {node.name} has {code_lines(node)} lines of code")
    assert not over, "\n".join(over)
