"""lm-eval's own prompt and metric code for the local task variants in this folder (nothing re-implemented).

The YAML files here name these with `!function utils.NAME`; lm-eval resolves that against this file first.
tests/test_evaluate_tasks.py checks that every local variant matches its built-in task except for the data source,
and that truthfulqa_mc2_local scores exactly as the built-in truthfulqa_mc2 on the same documents.
"""
from __future__ import annotations

import ast
from pathlib import Path

import lm_eval.tasks
import numpy as np
from lm_eval.tasks.kobest.utils import (  # noqa: F401
    copa_doc_to_choice,
    copa_doc_to_target,
    copa_doc_to_text,
    hellaswag_process_doc,
    macro_f1_score,
    sentineg_doc_to_text,
    wic_doc_to_text,
)


def _lm_eval_function(rel_path: str, name: str, namespace: dict):
    """Compile one top-level function from lm-eval's own task source file, without running that module's imports.

    lm_eval/tasks/truthfulqa/utils.py imports sacrebleu and rouge_score (nltk, scipy) for the generative variant:
    about 9 s on a loaded 2-core machine, for a metric that needs only numpy. The function is lm-eval's code,
    compiled from its installed file, so an lm-eval upgrade changes it here too.
    """
    path = Path(lm_eval.tasks.__file__).parent / rel_path
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    if len(nodes) != 1:
        raise ImportError(f"{path}: expected one top-level function {name!r}")
    code = compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec")
    ns = dict(namespace)
    exec(code, ns)  # noqa: S102 - lm-eval's own installed source
    return ns[name]


process_results_mc2 = _lm_eval_function("truthfulqa/utils.py", "process_results_mc2", {"np": np})
