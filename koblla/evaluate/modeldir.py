"""Check a model folder (HF layout, as `tune download` or a merge leaves it) and load it for evaluation or chat.

The checks read only small JSON files, so a wrong folder, a tokenizer from another model or an instruct model
without a chat template fails in well under a second, before gigabytes of weights load.
"""
from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from koblla.dtypes import torch_dtype
from koblla.errors import InputError

log = logging.getLogger(__name__)


class ModelDirError(InputError):
    """A model folder is missing, incomplete, or its tokenizer does not fit its weights."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    vocab_size: int  # rows of the embedding matrix (config.json)
    tokenizer_size: int  # highest token id the tokenizer can emit + 1
    has_chat_template: bool


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{path}: cannot read {what} ({e})") from None


def _tokenizer_size(tok_json: dict, where: Path) -> tuple[int, dict[str, int]]:
    """(max id + 1, {added token content: id}) from a fast tokenizer's tokenizer.json."""
    vocab = (tok_json.get("model") or {}).get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise ModelDirError(f"{where}: tokenizer.json has no model.vocab (not a BPE/WordPiece fast tokenizer?)")
    added = {t["content"]: int(t["id"]) for t in tok_json.get("added_tokens", [])}
    return max([*vocab.values(), *added.values()]) + 1, added


def check_model_dir(path: str | Path, kind: str = "base", param: str = "--model-dir") -> ModelInfo:
    """Fail fast, naming the file and what to do, unless `path` holds loadable weights and a matching tokenizer."""
    path = Path(path)
    if kind not in ("base", "instruct"):
        raise ModelDirError(f"model kind must be base or instruct (got {kind!r})")
    if not path.is_dir():
        raise ModelDirError(
            f"{param}: model directory {str(path)!r} does not exist (run the stage that builds it, e.g. "
            f"`dvc repro`, or set models.base_dir / models.instruct_dir in params.yaml)"
        )
    config = _read_json(path / "config.json", "config.json") if (path / "config.json").is_file() else None
    if config is None:
        meta = (path / "params.json").is_file()
        hint = " (it looks like Meta's original/ folder: point at its parent)" if meta else ""
        raise ModelDirError(f"{path}: no config.json; expected a Hugging Face model folder{hint}")
    if not list(path.glob("*.safetensors")) and not list(path.glob("pytorch_model*.bin")):
        raise ModelDirError(f"{path}: no *.safetensors weights next to config.json")
    if (path / "adapter_config.json").is_file() and importlib.util.find_spec("peft") is not None:
        # transformers would load the LoRA adapter a second time on top of merged weights.
        raise ModelDirError(f"{path}: holds adapter_config.json next to merged weights; "
                            "keep adapters in their own folder")
    tok_file = path / "tokenizer.json"
    if not tok_file.is_file():
        raise ModelDirError(f"{path}: no tokenizer.json (copy the tokenizer files of the model it was trained from)")
    tok_size, added = _tokenizer_size(_read_json(tok_file, "tokenizer.json"), tok_file)
    vocab_size = int(config.get("vocab_size") or 0)
    if tok_size > vocab_size:
        raise ModelDirError(
            f"{path}: tokenizer/model mismatch: tokenizer.json emits ids up to {tok_size - 1} but config.json "
            f"vocab_size is {vocab_size}; the tokenizer belongs to another model"
        )
    tok_cfg = _read_json(path / "tokenizer_config.json", "tokenizer_config.json") \
        if (path / "tokenizer_config.json").is_file() else {}
    for field in ("bos_token", "eos_token"):
        tok = tok_cfg.get(field)
        tok = tok.get("content") if isinstance(tok, dict) else tok
        cfg_id = config.get(f"{field}_id")
        if tok in added and isinstance(cfg_id, int) and added[tok] != cfg_id:
            raise ModelDirError(
                f"{path}: tokenizer/model mismatch: tokenizer_config.json {field} {tok!r} is id {added[tok]} but "
                f"config.json {field}_id is {cfg_id}"
            )
    has_template = bool(tok_cfg.get("chat_template")) or (path / "chat_template.jinja").is_file()
    if kind == "instruct" and not has_template:
        raise ModelDirError(
            f"{path}: an instruct model needs a chat template (tokenizer_config.json chat_template or "
            f"chat_template.jinja), as Meta-Llama-3-8B-Instruct ships one"
        )
    return ModelInfo(path=path, vocab_size=vocab_size, tokenizer_size=tok_size, has_chat_template=has_template)


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) from an HF folder, in eval mode on `device`; nothing is fetched from the hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch_dtype(dtype), local_files_only=True
    )
    model.to(device).eval()
    log.info("loaded %s (%.1f M parameters, %s on %s)", path, model.num_parameters() / 1e6, dtype, device)
    return model, tokenizer
