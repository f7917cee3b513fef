"""Config compatibility checks and the non-weight files of the merged model (config, tokenizer, chat template).

The output is an instruct-style model: its tokenizer, chat template, generation_config and eos (`<|eot_id|>`)
come from the instruct model; its architecture config comes from the korean model. torchtune's checkpointer and
tokenizer read `original/tokenizer.model` (and params.json) from the model dir, so those are copied too, but never
`original/consolidated.00.pth` (a second full copy of the weights).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from koblla.atomic import write_json
from koblla.errors import InputError

log = logging.getLogger(__name__)

ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
               "rope_theta")
INSTRUCT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                  "original/tokenizer.model", "original/params.json")
DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def config_value(config: dict[str, Any], field: str) -> Any:
    if field == "rope_theta" and "rope_theta" not in config:
        return (config.get("rope_parameters") or {}).get("rope_theta")  # transformers 5 nests it here
    return config.get(field)


def _as_ids(v: Any) -> list[int]:
    return [] if v is None else [int(x) for x in (v if isinstance(v, list) else [v])]


def check_configs(korean: dict, base: dict, instruct: dict, paths: dict[str, Path], skip_vocab: bool) -> None:
    """Fail naming the field when the three configs describe different architectures."""
    configs = {"korean": korean, "base": base, "instruct": instruct}
    for field in ARCH_FIELDS:
        if field == "vocab_size" and skip_vocab:
            continue
        values = {role: config_value(c, field) for role, c in configs.items()}
        present = [v for v in values.values() if v is not None]
        if not present:
            continue
        distinct = {float(v) for v in present} if field == "rope_theta" else set(present)
        if len(present) < 3 or len(distinct) > 1:
            detail = ", ".join(f"{role}={values[role]!r} ({paths[role]})" for role in configs)
            raise InputError(f"config field {field!r} differs between the models: {detail}; "
                             "a chat vector only applies across checkpoints of one architecture")
    # korean was fine-tuned from base, so they share base's eos; instruct's eos (<|eot_id|>) becomes the output's.
    if _as_ids(korean.get("eos_token_id")) != _as_ids(base.get("eos_token_id")):
        raise InputError(
            f"config field 'eos_token_id' differs between korean ({korean.get('eos_token_id')!r}, {paths['korean']}) "
            f"and base ({base.get('eos_token_id')!r}, {paths['base']}): the korean model should be fine-tuned from base"
        )
    vocab = config_value(korean, "vocab_size")
    bad = [i for i in _as_ids(instruct.get("eos_token_id")) if vocab is not None and i >= vocab]
    if bad:
        raise InputError(f"config field 'eos_token_id': instruct eos {bad} is outside the korean vocab ({vocab})")


def check_tokenizer(src: Path) -> None:
    if not ((src / "tokenizer.json").is_file() or (src / "original" / "tokenizer.model").is_file()):
        raise InputError(f"{src}: no tokenizer.json or original/tokenizer.model to give the merged model")


def model_dir(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def write_model_files(out: Path, korean_dir: Path, instruct_dir: Path, korean_config: dict, instruct_config: dict,
                      dtype: str, korean_tokenizer: bool) -> list[str]:
    """config.json (korean's, with instruct's eos and the output dtype) and the tokenizer side; returns names copied."""
    config = dict(korean_config)
    config["eos_token_id"] = instruct_config.get("eos_token_id")
    key = "torch_dtype" if "torch_dtype" in config and "dtype" not in config else "dtype"
    config[key] = DTYPE_NAMES[dtype]
    write_json(out / "config.json", config)
    copied = ["config.json"]
    src_tok = korean_dir if korean_tokenizer else instruct_dir
    check_tokenizer(src_tok)
    for name in INSTRUCT_FILES:
        src = (instruct_dir if name == "generation_config.json" else src_tok) / name
        if not src.is_file():
            log.warning("%s: absent, the merged model will lack %s", src, name)
            continue
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / name)
        copied.append(name)
    if korean_tokenizer:  # a vocab-extended korean tokenizer still needs instruct's chat template
        tc_path, itc = out / "tokenizer_config.json", instruct_dir / "tokenizer_config.json"
        if tc_path.is_file() and itc.is_file():
            tc = json.loads(tc_path.read_text(encoding="utf-8"))
            template = json.loads(itc.read_text(encoding="utf-8")).get("chat_template")
            if template is not None:
                tc["chat_template"] = template
                write_json(tc_path, tc)
    return copied
