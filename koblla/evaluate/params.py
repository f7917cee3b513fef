"""params.yaml section `evaluate`: which lm-eval tasks run on every model, how, and the sample generations."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from koblla.params import Section


class GenerationParams(Section):
    """Greedy answers to a fixed, versioned prompt set (evals/prompts/), written beside the scores."""

    prompts: str
    max_new_tokens: int = Field(ge=1)
    limit: int | None = Field(ge=1)
    system_prompt: str
    base_models: Literal["completion", "skip"]


class ChatParams(Section):
    """Defaults of `python -m stages.chat` (not a DVC stage; flags override these)."""

    max_new_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0.0)
    top_p: float = Field(gt=0.0, le=1.0)
    system_prompt: str


class EvaluateParams(Section):
    """Values and their docs live in params.yaml only (no defaults here, so the two cannot drift)."""

    tasks: list[str]
    num_fewshot: int | None = Field(ge=0)
    batch_size: int | Literal["auto"]
    limit: int | float | None
    apply_chat_template: bool
    fewshot_as_multiturn: bool
    device: str
    dtype: Literal["float32", "bfloat16", "float16"]
    bootstrap_iters: int = Field(ge=0)
    max_length: int | None = Field(ge=16)
    evals_dir: str
    data_files: dict[str, str]
    generation: GenerationParams
    chat: ChatParams

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one lm-eval task (e.g. truthfulqa_mc2_local)")
        dup = sorted({t for t in v if v.count(t) > 1})
        if dup:
            raise ValueError(f"tasks listed twice: {dup}")
        return v

    @model_validator(mode="after")
    def _check(self) -> EvaluateParams:
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0 or null (got {self.limit})")
        if self.device.startswith("cpu") and self.dtype == "float16":
            raise ValueError("dtype float16 is not supported on cpu; use float32 (or bfloat16)")
        return self
