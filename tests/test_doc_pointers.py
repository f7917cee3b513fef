"""No stale pointers in the docs: every repo path written in backticks in README.md and docs/*.md, and every
`python -m stages.X` / `python benchmarks/X.py` they mention, exists (and so does the test a `path::test` names and
every `koblla.module.name` in backticks).

Paths the pipeline produces (data/, models/, metrics/, reports/, scratch/, ...) are not checked: only the prefixes
below, which are tracked source. Placeholders (`<model>`, `*`, `{a,b}`, `NAME`, `X`) are skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SOURCE_DIRS = ("koblla", "stages", "configs", "scripts", "benchmarks", "tests", "prompts", "evals")
# Inline `code` and fenced ``` blocks: the text written in backticks.
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
PATH = re.compile(rf"(?<![\w./-])(?:{'|'.join(SOURCE_DIRS)})/[^\s`'\"()\[\],;]*")
STAGE_CMD = re.compile(r"python -m stages\.(\w+)")
BENCH_CMD = re.compile(r"python benchmarks/([\w-]+\.py)")
DOTTED = re.compile(r"(?<![\w./-])koblla(?:\.[\w<>]+)+")


def is_placeholder(path: str) -> bool:
    """`<model>`, `*.yaml`, `{a,b}`, `…`, or an upper-case word standing for a name (`stages/NAME.py`, `X`)."""
    words = [Path(part).stem for part in path.split("/")]
    return any(c in path for c in "<>*{}…") or any(w.isupper() and w not in ("README", "LICENSE") for w in words)


def dotted_exists(name: str) -> bool:
    """`koblla.a.b` is a module or package, or `koblla.a.b.x` is a name defined in module koblla.a.b."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        base = REPO_ROOT.joinpath(*parts[:i])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            rest = parts[i:]
            return not rest or re.search(rf"^\s*(?:def|class) {rest[0]}\b|^{rest[0]}\s*[:=]",
                                         module.read_text(encoding="utf-8"), re.M) is not None
    return False


def names_test(path: str, test: str) -> bool:
    """The test file at `path` defines test function `test` (a parametrized id's `[...]` ignored)."""
    test = re.match(r"\w*", test).group()
    return re.search(rf"^\s*def {test}\(", (REPO_ROOT / path).read_text(encoding="utf-8"), re.M) is not None


def stale_pointers(text: str) -> list[str]:
    """Every pointer of `text` that names nothing in the repo."""
    out = []
    for span in CODE.findall(text):
        for raw in PATH.findall(span):
            # pytest node ids (path::test), line numbers (path:3), a sentence's end in a fenced comment
            path = re.sub(r":\d+$", "", raw.split("::")[0].rstrip(".:"))
            if is_placeholder(path):
                continue
            if not (REPO_ROOT / path).exists():
                out.append(path)
            elif "::" in raw and not names_test(path, raw.split("::")[1]):
                out.append(raw)
        out += [name for name in DOTTED.findall(span) if not is_placeholder(name) and not dotted_exists(name)]
    out += [f"python -m stages.{m}" for m in STAGE_CMD.findall(text)
            if not is_placeholder(m) and not (REPO_ROOT / "stages" / f"{m}.py").is_file()]
    out += [f"python benchmarks/{b}" for b in BENCH_CMD.findall(text)
            if not is_placeholder(b) and not (REPO_ROOT / "benchmarks" / b).is_file()]
    return sorted(set(out))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_pointer_exists(doc: Path):
    stale = stale_pointers(doc.read_text(encoding="utf-8"))
    assert not stale, f"{doc.relative_to(REPO_ROOT)} points at what does not exist: {stale}"


def test_the_check_finds_a_stale_pointer():
    text = ("see `koblla/no_such.py` and `stages/extract_wiki.py`, `reports/<model>.md`, `data/x.csv`\n"
            "`tests/test_doc_pointers.py::test_every_pointer_exists`, `tests/test_doc_pointers.py::test_gone`\n"
            "`koblla.atomic.atomic_dir`, `koblla.wiki`, `koblla.finetune.tune_recipes.<recipe>`,\n"
            "`koblla.evaluate.chat`\n"
            "```bash\npython -m stages.no_such\npython benchmarks/no_such.py\n```\n")
    assert stale_pointers(text) == ["benchmarks/no_such.py", "koblla.evaluate.chat", "koblla/no_such.py",
                                    "python -m stages.no_such",
                                    "python benchmarks/no_such.py", "tests/test_doc_pointers.py::test_gone"]
