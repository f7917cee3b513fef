"""Greedy answers to a fixed, versioned prompt set, with the register (존댓말/반말) of every Korean answer measured.

Instruct models answer through their chat template (the way users meet them); base models continue a plain
"Q: ...\\nA:" prompt, or are skipped with one marker record (params evaluate.generation.base_models).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from koblla.errors import InputError

log = logging.getLogger(__name__)


class Prompt(BaseModel):
    """One line of evals/prompts/vN.jsonl (documented in evals/prompts/README.md)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str
    lang: str
    question_register: str | None = Field(None, alias="register")  # `register` would shadow BaseModel.register
    expect: str | None = None
    prompt: str

    @model_validator(mode="after")
    def _check(self) -> Prompt:
        if self.lang not in ("ko", "en"):
            raise ValueError(f"lang must be ko or en (got {self.lang!r})")
        for field, value in (("register", self.question_register), ("expect", self.expect)):
            if value not in (None, "banmal", "jondaetmal"):
                raise ValueError(f"{field} must be banmal, jondaetmal or null (got {value!r})")
        if not self.prompt.strip():
            raise ValueError("prompt is empty")
        return self


def load_prompts(path: str | Path, limit: int | None = None) -> list[Prompt]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"params evaluate.generation.prompts: prompt set {str(path)!r} does not exist")
    prompts, seen = [], set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            p = Prompt.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as e:
            raise InputError(f"{path}:{lineno}: bad prompt record ({e}); see evals/prompts/README.md") from None
        if p.id in seen:
            raise InputError(f"{path}:{lineno}: duplicate prompt id {p.id!r}")
        seen.add(p.id)
        prompts.append(p)
    if not prompts:
        raise InputError(f"{path}: no prompts")
    return prompts[:limit] if limit else prompts


def measure_register(text: str) -> dict:
    """Sentence counts per register and an overall label: jondaetmal | banmal | none (no Korean sentence)."""
    from koblla.text.register import classify_formality, count_registers

    c = count_registers(text)
    counts = {k: int(c.sentences[k]) for k in ("hapsyo", "haeyo", "banmal", "none")}
    if not c.evidenced:
        label = "none"
    else:
        label = "jondaetmal" if classify_formality(text) == "formal" else "banmal"
    # No sentence with a final ending = nothing to judge: null, not the 1.0 that `share` returns for the translate
    # stage's pass/fail rule (an empty answer is not a formal one).
    share = round(c.share("hapsyo", "haeyo"), 4) if c.evidenced else None
    return {"label": label, "sentences": counts, "formal_share": share}


def prompt_text(tokenizer, prompt: Prompt, chat: bool, system_prompt: str = "") -> str:
    if not chat:
        return f"Q: {prompt.prompt}\nA:"
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": prompt.prompt}
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a turn: generation_config eos (Llama-3-Instruct lists 128001 and 128009) + tokenizer eos."""
    ids = model.generation_config.eos_token_id
    ids = list(ids) if isinstance(ids, (list, tuple)) else ([ids] if ids is not None else [])
    for tok in ("<|eot_id|>", "<|end_of_text|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.append(tid)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


def greedy_answer(model, tokenizer, text: str, max_new_tokens: int) -> str:
    import torch

    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, max_length=None, do_sample=False,
            eos_token_id=stop_token_ids(model, tokenizer),
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def generate_samples(model, tokenizer, name: str, kind: str, gen_params, prompts_version: str) -> list[dict]:
    """One record per prompt (or one marker record when a base model is skipped)."""
    if kind == "base" and gen_params.base_models == "skip":
        return [{"model": name, "kind": kind, "skipped": "base model (evaluate.generation.base_models: skip)",
                 "prompts": prompts_version}]
    prompts = load_prompts(gen_params.prompts, gen_params.limit)
    chat = kind == "instruct"
    records = []
    for p in prompts:
        text = prompt_text(tokenizer, p, chat, gen_params.system_prompt)
        # BOS comes from the chat template; a plain completion gets it here, as in training.
        if not chat and tokenizer.bos_token and not text.startswith(tokenizer.bos_token):
            text = tokenizer.bos_token + text
        answer = greedy_answer(model, tokenizer, text, gen_params.max_new_tokens)
        rec = {"model": name, "kind": kind, "mode": "chat" if chat else "completion", "prompts": prompts_version,
               "id": p.id, "lang": p.lang, "prompt": p.prompt, "answer": answer}
        if p.lang == "ko":
            reg = measure_register(answer)
            rec["register"] = reg
            rec["register_expected"] = p.expect
            rec["register_ok"] = None if p.expect is None or reg["label"] == "none" else reg["label"] == p.expect
        records.append(rec)
        log.debug("%s %s: %r", name, p.id, answer[:80])
    return records


def summarize_registers(records: list[dict]) -> dict[str, float]:
    """Counts for the metrics file: Korean answers, how many were judged, how many met the expected register."""
    ko = [r for r in records if r.get("lang") == "ko"]
    judged = [r for r in ko if r.get("register_ok") is not None]
    return {
        "generations/n": float(sum(1 for r in records if "answer" in r)),
        "generations/ko_n": float(len(ko)),
        "generations/ko_register_judged": float(len(judged)),
        "generations/ko_register_ok": float(sum(1 for r in judged if r["register_ok"])),
    }
