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


# ---- KoBLLa's own measures (ko_bpb, en_bpb, chat_nll_en, chat_nll_ko) -----------------------------------------
# Built the way lm-eval's wikitext task is (tasks/wikitext/preprocess_wikitext.py): process_results returns
# (loglikelihood, count) pairs and lm-eval's registered aggregations (weighted_perplexity, bits_per_byte) sum them.

LLAMA3_BOS = "<|begin_of_text|>"


def strip_texts(dataset):
    """Documents as text without the surrounding whitespace (the `text` loader keeps a paragraph's newline)."""
    return dataset.map(lambda d: {"text": d["text"].strip()}).filter(lambda d: bool(d["text"]))


def process_results_text_bpb(doc, results):
    """One rolling loglikelihood per document -> (ll, bytes) / (ll, words) pairs for bpb and perplexities."""
    (loglikelihood,) = results
    text = doc["text"]
    n_bytes = len(text.encode("utf-8"))
    n_words = len(text.split())
    return {
        "word_perplexity": (loglikelihood, n_words),
        "byte_perplexity": (loglikelihood, n_bytes),
        "bits_per_byte": (loglikelihood, n_bytes),
    }


def llama3_header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>"


def assistant_turns(dataset):
    """openai-style conversations -> one document per assistant turn: the Llama 3 chat template of everything
    before it, ending with the assistant header (`context`), and "\\n\\n" + reply + <|eot_id|> (`target`)."""

    def expand(batch):
        out = {"context": [], "target": [], "reply": []}
        for messages in batch["messages"]:
            prefix = LLAMA3_BOS
            for m in messages:
                if m["role"] == "assistant":
                    out["context"].append(prefix + llama3_header("assistant"))
                    out["target"].append("\n\n" + m["content"] + "<|eot_id|>")
                    out["reply"].append(m["content"])
                prefix += llama3_header(m["role"]) + "\n\n" + m["content"] + "<|eot_id|>"
        return out

    return dataset.map(expand, batched=True, remove_columns=dataset.column_names)


def process_results_chat_nll(doc, results):
    loglikelihood, _ = results[0]
    return {"nll_per_byte": (-loglikelihood, len(doc["reply"].encode("utf-8")))}


def nll_per_byte(items):
    """Summed NLL (nats) over summed reply bytes: long replies weigh more, as in bits_per_byte."""
    nll, n_bytes = zip(*items, strict=True)
    return sum(nll) / sum(n_bytes)
