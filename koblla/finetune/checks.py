"""Checks that run before torchtune starts, so bad input fails in a second with a clear message, not after
model loading (or, worse, after a run that trained zero steps).

Covered: a missing init checkpoint or tokenizer, max_seq_len above the model's, tokenizer ids that do not fit the
model's vocabulary, and a dataset that is empty (or too small for one optimizer step) after filtering.
"""
from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

from koblla.errors import InputError
from koblla.finetune.checkpoint import model_shape, read_model_config, weight_files
from koblla.finetune.params import FinetuneBaseParams, FinetuneInstructParams, FinetuneParams

logger = logging.getLogger(__name__)


def check_model(model_dir: Path, p: FinetuneParams, param: str) -> dict:
    """The init checkpoint exists, is a Llama 3 HF checkpoint, and fits max_seq_len and its tokenizer."""
    if not model_dir.is_dir():
        raise InputError(f"init checkpoint {str(model_dir)!r} does not exist ({param}); "
                         "build it first (dvc repro) or point the param at a `tune download` folder")
    config = read_model_config(model_dir)
    shape = model_shape(model_dir, config)
    weight_files(model_dir)  # the shards the index names are all there
    if config.get("rope_scaling"):
        raise InputError(f"{model_dir}/config.json has rope_scaling {config['rope_scaling']}: a Llama 3.1+ model; "
                         "these configs build Llama 3 (torchtune.models.llama3.lora_llama3)")
    if p.max_seq_len > shape["max_seq_len"]:
        raise InputError(f"max_seq_len {p.max_seq_len} is above the model's max_position_embeddings "
                         f"{shape['max_seq_len']} ({model_dir}/config.json): lower max_seq_len in params.yaml")
    tok_path = model_dir / "original" / "tokenizer.model"
    if not tok_path.is_file():
        raise InputError(f"{tok_path}: missing; the init checkpoint needs original/tokenizer.model "
                         "(tune download layout)")
    top_id = max(tiktoken_max_rank(tok_path), LLAMA3_LAST_SPECIAL_ID)
    if top_id >= shape["vocab_size"]:
        raise InputError(f"tokenizer/model vocab mismatch: {tok_path} with Llama 3's special tokens uses ids up to "
                         f"{top_id}, but the model ({model_dir}/config.json) has only vocab_size {shape['vocab_size']} "
                         "embeddings; use the tokenizer that came with this checkpoint")
    emb = _embedding_rows(model_dir)
    if emb is not None and emb != shape["vocab_size"]:
        raise InputError(f"{model_dir}: model.embed_tokens.weight has {emb} rows but config.json says vocab_size "
                         f"{shape['vocab_size']}; the checkpoint and its config do not match")
    return shape


# torchtune's llama3_tokenizer puts Llama 3's 256 special tokens at ids 128000..128255 whatever the BPE file holds
# (it also lists <|image|> = 128256 for Llama 3.2 vision, which text training never emits).
LLAMA3_LAST_SPECIAL_ID = 128255


def tiktoken_max_rank(path: Path) -> int:
    """The largest rank in a tiktoken BPE file (`base64 rank` per line), read without importing torchtune."""
    top = -1
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                top = max(top, int(line.split()[1]))
            except (IndexError, ValueError):
                raise InputError(f"{path}:{lineno}: not a tiktoken BPE line (`base64 rank`)") from None
    if top < 0:
        raise InputError(f"{path}: empty tokenizer file")
    return top


def _embedding_rows(model_dir: Path) -> int | None:
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    name = "model.embed_tokens.weight"
    shard = (json.loads(index.read_text())["weight_map"].get(name) if index.is_file() else "model.safetensors")
    if not shard:
        return None
    try:
        with safe_open(str(model_dir / shard), framework="pt") as f:
            return f.get_slice(name).get_shape()[0] if name in f.keys() else None
    except Exception as e:  # safetensors raises its own error types
        raise InputError(f"{model_dir / shard}: not a readable safetensors file ({e}); "
                         "re-download the checkpoint") from e


def _tokens_per_step(p: FinetuneParams) -> int:
    return p.max_seq_len * p.batch_size * p.gradient_accumulation_steps * p.nproc_per_node * p.nnodes


def check_text_csv(path: Path, p: FinetuneBaseParams, param: str = "data/kowiki/train.csv") -> dict:
    """The CPT CSV has a text column with non-empty rows, and enough bytes for at least one optimizer step."""
    if not path.is_file():
        raise InputError(f"{path}: missing; run `dvc repro extract_wiki` first")
    csv.field_size_limit(sys.maxsize)  # wiki articles exceed csv's 128 KiB default
    rows = docs = nbytes = 0
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if p.text_column not in (reader.fieldnames or []):
            raise InputError(f"{path}: no {p.text_column!r} column (columns: {reader.fieldnames}); "
                             "set finetune_base.text_column")
        for row in reader:
            rows += 1
            text = row[p.text_column] or ""
            if text.strip():
                docs += 1
                nbytes += len(text.encode("utf-8"))
    if docs == 0:
        raise InputError(f"{path}: empty dataset after filtering ({rows} rows, none with text in "
                         f"{p.text_column!r}); check extract_wiki's output and min_chars")
    # A byte-level BPE token covers >= 1 byte, plus BOS/EOS per document: an upper bound on tokens.
    max_tokens = nbytes + 2 * docs
    if p.packed and max_tokens < _tokens_per_step(p):
        raise InputError(f"{path}: {docs} documents give at most {max_tokens} tokens, fewer than one optimizer step "
                         f"needs ({_tokens_per_step(p)} = max_seq_len*batch_size*grad_accum*devices); "
                         "use more data or smaller batch_size/max_seq_len")
    return {"rows": rows, "documents": docs, "bytes": nbytes}


def _chat_ok(messages) -> bool:
    return (isinstance(messages, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                               for m in messages)
            and any(m.get("role") == "assistant" and m["content"].strip() for m in messages))


def check_chat_sets(data_dir: Path, p: FinetuneInstructParams) -> dict[str, int]:
    """Every weighted set exists and parses; together they hold enough usable chats for one optimizer step."""
    counts = {}
    for name, w in p.datasets.items():
        if w <= 0:
            continue
        path = data_dir / f"{name}.jsonl"
        if not path.is_file():
            raise InputError(f"{path}: missing (finetune_instruct.datasets uses {name!r}); "
                             "run `dvc repro translate` or set its weight to 0")
        n = 0
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: not JSON ({e})") from None
            n += _chat_ok(rec.get("messages"))
        counts[name] = n
    samples = sum(int(w * counts.get(k, 0)) for k, w in p.datasets.items() if w > 0)
    if samples == 0:
        raise InputError(f"{data_dir}: empty dataset after filtering: no record in {sorted(counts)} has openai-style "
                         "`messages` with an assistant answer")
    per_step = p.batch_size * p.gradient_accumulation_steps * p.nproc_per_node * p.nnodes
    if not p.packed and samples < per_step:
        raise InputError(f"{data_dir}: the mix has {samples} chats, fewer than one optimizer step needs "
                         f"({per_step} = batch_size*grad_accum*devices); lower batch_size or add data")
    return counts
