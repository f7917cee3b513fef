"""params.yaml section `evaluate`: which lm-eval tasks run on every model, how, and the sample generations."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from koblla.params import Section


class GenerationParams(Section):
    """Greedy answers to a fixed, versioned prompt set (evals/prompts/), written beside the scores."""

    prompts: str = "evals/prompts/v1.jsonl"  # the prompt set; bump the file (v2.jsonl), never edit a released one
    max_new_tokens: int = Field(16, ge=1)  # per answer; tokens, not characters (8B real runs: 256)
    limit: int | None = Field(None, ge=1)  # first N prompts only; null = all
    system_prompt: str = ""  # instruct models: an optional system turn before each prompt
    # Base models have no chat template: "completion" writes their plain continuation of "Q: ...\nA:",
    # "skip" writes one marker record so the file still exists for DVC.
    base_models: Literal["completion", "skip"] = "completion"


class ChatParams(Section):
    """Defaults of `python -m stages.chat` (not a DVC stage; flags override these)."""

    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)  # 0 = greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    system_prompt: str = ""


class EvaluateParams(Section):
    # lm-eval task, group or tag names. Embedded default: the local variants in evals/ (suffix `_local`) over our
    # sample files. Real run: truthfulqa_mc2, truthfulqa_mc1, kobest_boolq, kobest_copa, kobest_hellaswag,
    # kobest_sentineg, kobest_wic, kmmlu, haerae (lm-eval's built-ins; they read the HF hub, so need its cache).
    tasks: list[str] = ["truthfulqa_mc2_local", "kobest_copa_local"]
    num_fewshot: int | None = Field(0, ge=0)  # null = each task's own default
    batch_size: int | Literal["auto"] = 8  # requests per forward pass; "auto" probes the GPU's memory
    limit: int | float | None = None  # documents per task (a fraction if < 1); null = all. Never for reported numbers
    # Instruct models: wrap every prompt in the tokenizer's chat template (base models never are). lm-eval's
    # Open LLM Leaderboard numbers for Llama-3-Instruct are without it; with it is closer to how the model is used.
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = True  # with the chat template and num_fewshot > 0: one turn per shot
    device: str = "cpu"  # cuda, cuda:0, mps, cpu
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # bf16 on GPUs; fp32 on CPU is faster here
    bootstrap_iters: int = Field(1000, ge=0)  # stderr of non-mean metrics (lm-eval's default 100000 is slow)
    max_length: int | None = Field(None, ge=16)  # context cap in tokens; null = the model's own
    evals_dir: str = "evals"  # lm-eval include_path: local task YAMLs (ours, or any the user writes over own files)
    # local task -> data file replacing the one its YAML names (split = the task's test/validation split), e.g.
    # {en_bpb: /data/english_heldout.txt, truthfulqa_mc2_local: /data/truthfulqa_full.jsonl}
    data_files: dict[str, str] = {}
    generation: GenerationParams = GenerationParams()
    chat: ChatParams = ChatParams()

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
