"""Held-out loss of a published HF model: mean next-token cross-entropy (nats/token) over held-out documents.

Used after finetune_base on the Korean dev split (did CPT learn Korean?) and on a small English text (did it keep
English?), for both the init checkpoint and the trained one. Each document is tokenized as in training (BOS ...
EOS; the checkpoint's tokenizer.json gives the same ids as torchtune's llama3 tokenizer, see STACK.md) and cut
into windows of at most max_seq_len tokens, so no window attends across documents; evaluation stops after
`max_tokens` predicted tokens.
"""
from __future__ import annotations

import csv
import logging
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

from koblla.dtypes import torch_dtype

logger = logging.getLogger(__name__)


def read_csv_texts(path: Path, column: str = "text") -> list[str]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        return [r[column] for r in csv.DictReader(f) if (r.get(column) or "").strip()]


def read_paragraphs(path: Path) -> list[str]:
    """A plain text file as documents: paragraphs separated by blank lines."""
    text = path.read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def windows(texts: Iterable[str], tokenizer, max_seq_len: int, max_tokens: int) -> list[list[int]]:
    out, budget = [], max_tokens
    # torchtune's text_completion_dataset wraps each document in these two (Llama 3 base ids 128000 / 128001).
    bos, eos = tokenizer.convert_tokens_to_ids(["<|begin_of_text|>", "<|end_of_text|>"])
    for text in texts:
        ids = [bos, *tokenizer.encode(text, add_special_tokens=False), eos]
        for i in range(0, len(ids), max_seq_len):
            w = ids[i:i + max_seq_len]
            if len(w) < 2 or budget <= 0:
                continue
            w = w[: budget + 1]
            out.append(w)
            budget -= len(w) - 1
        if budget <= 0:
            break
    return out


@torch.no_grad()
def heldout_losses(model_dir: Path, sets: dict[str, list[str]], *, max_seq_len: int, max_tokens: int,
                   device: str = "cpu", dtype: str = "fp32") -> dict[str, dict]:
    """{set name: {"loss": mean nats/token, "tokens": predicted tokens}} of the HF model in `model_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype(dtype)).to(device).eval()
    out = {}
    for name, texts in sets.items():
        total, count = 0.0, 0
        for w in windows(texts, tok, max_seq_len, max_tokens):
            ids = torch.tensor([w], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            count += len(w) - 1
        out[name] = {"loss": total / count if count else math.nan, "tokens": count}
    del model
    return out
