"""params.yaml `translate` section: input, backend, register, memory key parts, validation bounds."""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from koblla.params import Section
from koblla.translate import validate as v


class OpenAIBackendParams(Section):
    """Any OpenAI-compatible Chat Completions endpoint (Gemini, OpenAI, vLLM, Ollama, llama.cpp server)."""

    base_url: str = "https://generativelanguage.googleapis.com/v1beta/openai/"
    api_key_env: str = "GEMINI_API_KEY"  # NAME of the env var holding the key; the key itself never goes here
    concurrency: int = Field(16, ge=1)  # requests in flight at once
    rpm: int = Field(0, ge=0)  # requests per minute, 0 = no limit
    tpm: int = Field(0, ge=0)  # tokens (prompt + max output estimate) per minute, 0 = no limit
    timeout_s: float = Field(120.0, gt=0)  # one HTTP request, connect to last byte
    max_retries: int = Field(6, ge=0)  # transport retries (429, 5xx, timeouts, unreadable JSON) per attempt
    backoff_base_s: float = Field(1.0, gt=0)  # first backoff; doubles per retry, full jitter
    backoff_max_s: float = Field(60.0, gt=0)
    temperature: float | None = Field(0.0, ge=0)  # None: not sent (models that accept only their default)
    max_tokens: int = Field(4096, ge=1)  # output tokens per request (thinking models count their thinking too)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"  # OpenAI o-series/GPT-5: the latter
    truncation_budget_factor: float = Field(2.0, ge=1)  # finish_reason length: retry with max_tokens x this, then flag
    extra_body: dict[str, Any] = {}  # merged verbatim into every request body (reasoning_effort, safety settings ...)
    preflight: Literal["models", "completion", "off"] = "models"  # GET {base_url}/models, or a 1-token completion


class HFBackendParams(Section):
    """A local transformers chat model (a folder with config.json, tokenizer files and a chat template)."""

    model_path: str = ""
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(2048, ge=1)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"


class TranslateParams(Section):
    """Translate LIMA into KoLIMA / BiLIMA (docs/translate.md)."""

    input: str = "assets/lima/lima_sample.jsonl"
    input_format: Literal["lima", "instruction_response", "hf"] = "lima"
    hf_dataset: str = "GAIR/lima"  # input_format: hf (gated; token from the HF_TOKEN env var)
    hf_split: str = "train"
    limit: int = Field(0, ge=0)  # translate only the first N items, 0 = all
    on_bad_record: Literal["error", "skip"] = "error"

    backend: Literal["memory", "openai", "hf"] = "memory"
    model: str = "koblla-reference"  # model name sent to the backend; part of every memory key
    prompt_version: str = "v1"  # prompts/translate_<version>.yaml; part of every memory key
    seed_memory: list[str] = ["assets/lima/translation_memory.jsonl"]  # read-only memories consulted first
    assistant_register: Literal["hapsyo", "haeyo"] = "hapsyo"  # user turns are always banmal
    system_prompt: str = ""  # "" = no system message in the output datasets

    chunk_tokens: int = Field(1500, ge=64)  # longer messages are split at paragraph/code boundaries
    context: bool = True  # send the conversation so far (source + accepted translation) as read-only context
    context_chars: int = Field(6000, ge=0)  # most recent context kept per request (characters)
    max_attempts: int = Field(3, ge=1)  # translations per chunk until one validates; then flagged

    # Quality gate (koblla/translate/validate.py); defaults set from the reference translations, docs/translate.md.
    min_hangul_share: float = Field(0.45, ge=0, le=1)  # Hangul / ALL letters (code, URLs, LaTeX removed)
    max_foreign_script_share: float = Field(0.03, ge=0, le=1)  # Han + Kana + other non-Latin scripts / all letters
    min_length_ratio: float = Field(0.28, gt=0)  # Korean / English letters; below: truncated (reference 0.35-0.62)
    max_length_ratio: float = Field(0.85, gt=0)  # above: invented text or an answer
    min_sentence_ratio: float = Field(0.75, ge=0)  # Korean / English sentences (2+ in the source); below: cut
    max_sentence_ratio: float = Field(1.5, gt=0)  # Korean sentences > this x English + 1: invented sentences
    max_missing_terms_share: float = Field(0.2, ge=0, le=1)  # numbers/acronyms (53, DNS) of the source not in the reply
    min_terms: int = Field(3, ge=1)  # ... checked when the source has at least this many
    max_paragraph_diff: int = Field(0, ge=0)  # |paragraphs(ko) - paragraphs(en)| allowed
    max_list_item_diff: int = Field(0, ge=0)
    max_heading_diff: int = Field(0, ge=0)
    min_register_share: float = Field(0.8, ge=0, le=1)  # sentences in the target register / sentences with an ending
    max_copied_share: float = Field(0.5, ge=0, le=1)  # source word 4-grams found verbatim in the output
    placeholders_in_order: bool = True  # code blocks, inline code, URLs, LaTeX come back in the source's order
    reject_commentary: bool = True  # preambles / trailing notes, patterns below (regex, Python syntax)
    meta_pattern: str = v.META_PATTERN  # first/last line mentions the translation and the source's does not
    opener_pairs: list[tuple[str, str]] = [tuple(x) for x in v.OPENER_PAIRS]  # (reply opener, the source opener it needs)
    closer_pattern: str = v.CLOSER_PATTERN  # "(참고: ...)" / "Note: ..." closing a reply whose source ...
    source_closer_pattern: str = v.SOURCE_CLOSER_PATTERN  # ... does not close like this

    openai: OpenAIBackendParams = OpenAIBackendParams()
    hf: HFBackendParams = HFBackendParams()

    @model_validator(mode="after")
    def _check(self) -> "TranslateParams":
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
