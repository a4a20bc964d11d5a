"""The package's shape (docs/architecture.md): no module in facegrid/ over 400 lines, no function over 50."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "facegrid"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules by concern: {long}"


def test_no_function_is_over_50_lines():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert not long, f"split these functions into named steps: {long}"
