"""Code shape: library functions stay short (none in koblla/ over MAX_LINES lines; our torchtune recipe copies
excepted), and the library and stages raise typed errors (koblla.errors), never a bare RuntimeError or Exception."""
from __future__ import annotations

import ast

from conftest import REPO_ROOT

MAX_LINES = 60
EXCLUDED = ("koblla/finetune/tune_recipes/",)  # upstream copies, kept as close to torchtune as the fixes allow


def long_functions(root=REPO_ROOT, package: str = "koblla", max_lines: int = MAX_LINES) -> list[str]:
    """`path:line name (N lines)` for every function or method (nested ones too) longer than max_lines."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(EXCLUDED):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > max_lines:
                    found.append(f"{rel}:{node.lineno} {node.name} ({lines} lines)")
    return found


def bare_raises(root=REPO_ROOT, packages: tuple[str, ...] = ("koblla", "stages")) -> list[str]:
    """`path:line` of every `raise RuntimeError(...)` / `raise Exception(...)` (or the bare class)."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(EXCLUDED):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
                if not isinstance(node, ast.Raise) or node.exc is None:
                    continue
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in ("RuntimeError", "Exception"):
                    found.append(f"{rel}:{node.lineno}")
    return found


def test_no_bare_runtime_error_or_exception():
    found = bare_raises()
    assert not found, "raise a koblla.errors type (KoBLLaError, InputError, ...) instead: " + ", ".join(found)


def test_no_library_function_over_60_lines():
    long = long_functions()
    assert not long, f"split these into named steps (at most {MAX_LINES} lines each): " + "; ".join(long)


def test_the_check_finds_a_long_function(tmp_path):
    pkg = tmp_path / "koblla"
    pkg.mkdir()
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(f"def short():\n    pass\n\n\nclass C:\n    def long(self):\n{body}", encoding="utf-8")
    assert long_functions(tmp_path) == [f"koblla/m.py:6 long ({MAX_LINES + 1} lines)"]


def test_the_check_finds_a_bare_raise(tmp_path):
    (tmp_path / "koblla").mkdir()
    (tmp_path / "koblla/m.py").write_text("def f():\n    raise RuntimeError('x')\n\n\ndef g():\n    raise Exception\n",
                                          encoding="utf-8")
    assert bare_raises(tmp_path, ("koblla",)) == ["koblla/m.py:2", "koblla/m.py:6"]
