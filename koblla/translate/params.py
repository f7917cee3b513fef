"""params.yaml `translate` section: input, backend, register, memory key parts, validation bounds."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from koblla.params import Section


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
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(4096, ge=1)  # output tokens per request


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
    max_attempts: int = Field(3, ge=1)  # translations per chunk until one validates; then flagged
    min_hangul_share: float = Field(0.5, ge=0, le=1)  # Hangul / (Hangul + Latin letters), code/URLs ignored
    min_length_ratio: float = Field(0.15, gt=0)  # Korean chars / English chars, below: truncated
    max_length_ratio: float = Field(2.0, gt=0)  # above: answered instead of translated
    min_register_share: float = Field(0.8, ge=0, le=1)  # sentences in the target register / sentences with an ending
    max_copied_share: float = Field(0.5, ge=0, le=1)  # source word 4-grams found verbatim in the output

    openai: OpenAIBackendParams = OpenAIBackendParams()
    hf: HFBackendParams = HFBackendParams()

    @model_validator(mode="after")
    def _check(self) -> "TranslateParams":
        if self.min_length_ratio >= self.max_length_ratio:
            raise ValueError("min_length_ratio must be below max_length_ratio")
        if self.backend == "hf" and not self.hf.model_path:
            raise ValueError("backend hf needs hf.model_path (a local transformers chat model folder)")
        if self.backend == "openai" and not self.openai.api_key_env:
            raise ValueError("backend openai needs openai.api_key_env (the NAME of the env var with the key)")
        if not self.model:
            raise ValueError("model must name the model (it is part of every translation-memory key)")
        return self
