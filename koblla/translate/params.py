"""params.yaml `translate` section: input, backend, register, memory key parts, validation bounds."""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from koblla.params import Section


class OpenAIBackendParams(Section):
    """Any OpenAI-compatible Chat Completions endpoint (Gemini, OpenAI, vLLM, Ollama, llama.cpp server)."""

    base_url: str
    api_key_env: str  # the NAME of an env var; the key itself never goes in params
    concurrency: int = Field(ge=1)
    rpm: int = Field(ge=0)
    tpm: int = Field(ge=0)
    timeout_s: float = Field(gt=0)
    max_retries: int = Field(ge=0)
    backoff_base_s: float = Field(gt=0)
    backoff_max_s: float = Field(gt=0)
    temperature: float | None = Field(ge=0)
    max_tokens: int = Field(ge=1)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"]
    truncation_budget_factor: float = Field(ge=1)
    extra_body: dict[str, Any]
    preflight: Literal["models", "completion", "off"]


class HFBackendParams(Section):
    """A local transformers chat model (a folder with config.json, tokenizer files and a chat template)."""

    model_path: str
    batch_size: int = Field(ge=1)
    max_new_tokens: int = Field(ge=1)
    device: str
    dtype: Literal["auto", "bfloat16", "float16", "float32"]


class TranslateParams(Section):
    """Translate LIMA into KoLIMA / BiLIMA (docs/translate.md).

    Values and their docs live in params.yaml only (no defaults here, so the two cannot drift)."""

    input: str
    input_format: Literal["lima", "instruction_response", "hf"]
    hf_dataset: str
    hf_split: str
    limit: int = Field(ge=0)
    on_bad_record: Literal["error", "skip"]

    backend: Literal["memory", "openai", "hf"]
    model: str
    prompt_version: str
    seed_memory: list[str]
    assistant_register: Literal["hapsyo", "haeyo"]
    system_prompt: str

    chunk_tokens: int = Field(ge=64)
    context: bool
    context_chars: int = Field(ge=0)
    max_attempts: int = Field(ge=1)

    # The quality gate (koblla/translate/validate.py, its Limits)
    min_hangul_share: float = Field(ge=0, le=1)
    max_foreign_script_share: float = Field(ge=0, le=1)
    min_length_ratio: float = Field(gt=0)
    max_length_ratio: float = Field(gt=0)
    min_sentence_ratio: float = Field(ge=0)
    max_sentence_ratio: float = Field(gt=0)
    max_missing_terms_share: float = Field(ge=0, le=1)
    min_terms: int = Field(ge=1)
    max_paragraph_diff: int = Field(ge=0)
    max_list_item_diff: int = Field(ge=0)
    max_heading_diff: int = Field(ge=0)
    min_register_share: float = Field(ge=0, le=1)
    max_copied_share: float = Field(ge=0, le=1)
    placeholders_in_order: bool
    reject_commentary: bool
    meta_pattern: str
    opener_pairs: list[tuple[str, str]]
    closer_pattern: str
    source_closer_pattern: str

    openai: OpenAIBackendParams
    hf: HFBackendParams

    @model_validator(mode="after")
    def _check(self) -> TranslateParams:
        if self.min_length_ratio >= self.max_length_ratio:
            raise ValueError("min_length_ratio must be below max_length_ratio")
        patterns = [(name, getattr(self, name)) for name in ("meta_pattern", "closer_pattern", "source_closer_pattern")]
        patterns += [(f"opener_pairs[{i}]", x) for i, pair in enumerate(self.opener_pairs) for x in pair]
        for name, pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"{name}: not a valid regular expression ({e})") from None
        if self.backend == "hf" and not self.hf.model_path:
            raise ValueError("backend hf needs hf.model_path (a local transformers chat model folder)")
        if self.backend == "openai" and not self.openai.api_key_env:
            raise ValueError("backend openai needs openai.api_key_env (the NAME of the env var with the key)")
        if not self.model:
            raise ValueError("model must name the model (it is part of every translation-memory key)")
        return self
