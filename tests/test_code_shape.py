"""The codebase stays readable: no function longer than a screen (60 lines) in hpt/, in the
trainers users copy (trainers/) or in the scripts (scripts/), and no module over 400 lines in
hpt/; the CLI's argument table is the one declarative block allowed."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HPT = REPO / "hpt"
SHORT_FUNCTIONS = ("hpt", "trainers", "scripts")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
DECLARATIVE = {("hpt/cli/parser.py", "build_parser")}


def _long_functions(path: Path) -> list[str]:
    where = path.relative_to(REPO).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES and (where, node.name) not in DECLARATIVE:
                found.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_functions_fit_a_screen():
    long_functions = [found for folder in SHORT_FUNCTIONS
                      for path in sorted((REPO / folder).rglob("*.py"))
                      for found in _long_functions(path)]
    assert long_functions == []


def test_modules_of_hpt_stay_small():
    long_modules = [f"{path.relative_to(HPT)}: {lines} lines"
                    for path in sorted(HPT.rglob("*.py"))
                    if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert long_modules == []
