"""params.yaml sections `finetune_base` and `finetune_instruct`: the knobs of the two torchtune LoRA runs.

Types and constraints only: every value, and the comment that says what it trades, lives in params.yaml (one home
per value; no defaults here). The stage fills the `???` keys of configs/finetune_*.yaml from these fields
(koblla.finetune.tune_config) and hands torchtune the finished config file.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from koblla.params import Section

LoraAttnModule = Literal["q_proj", "k_proj", "v_proj", "output_proj"]
# data/lima_ko/<name>.jsonl as the translate stage writes them (lima_en: the English source, unchanged).
INSTRUCT_SETS = ("kolima", "bilima_en_ko", "bilima_ko_en", "lima_en")


class FinetuneParams(Section):
    """Knobs shared by both LoRA stages."""

    # scale: one device -> lora_finetune_single_device; more -> lora_finetune_distributed under torchrun
    device: Literal["cpu", "cuda"]
    dtype: Literal["fp32", "bf16"]
    nproc_per_node: int = Field(ge=1)
    nnodes: int = Field(ge=1)
    node_rank: int = Field(ge=0)
    rdzv_endpoint: str
    compile: bool
    activation_checkpointing: bool
    activation_offloading: bool
    # schedule
    max_seq_len: int = Field(ge=8)
    batch_size: int = Field(ge=1)
    gradient_accumulation_steps: int = Field(ge=1)
    epochs: int = Field(ge=1)
    max_steps_per_epoch: int | None = Field(ge=1)
    lr: float = Field(gt=0)
    warmup_steps: int = Field(ge=0)
    weight_decay: float = Field(ge=0)
    clip_grad_norm: float = Field(gt=0)
    # LoRA
    lora_rank: int = Field(ge=1)
    lora_alpha: float = Field(gt=0)
    lora_dropout: float = Field(ge=0, lt=1)
    lora_attn_modules: list[LoraAttnModule]
    lora_mlp: bool
    lora_output: bool
    use_dora: bool
    packed: bool
    # outputs
    save_dtype: Literal["bf16", "fp32"]
    keep_scratch: bool
    tune_overrides: dict[str, Any]

    @model_validator(mode="after")
    def _check(self):
        world = self.nproc_per_node * self.nnodes
        if world > 1 and self.device != "cuda":
            raise ValueError(
                f"nproc_per_node * nnodes = {world} needs device: cuda "
                "(torchtune's lora_finetune_distributed uses NCCL, which has no CPU backend)"
            )
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("nnodes > 1 needs rdzv_endpoint (host:port of node 0, reachable from every node)")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be < nnodes {self.nnodes}")
        if self.activation_offloading and not (self.activation_checkpointing and self.device == "cuda"):
            raise ValueError("activation_offloading needs device: cuda and activation_checkpointing: true")
        if not self.lora_attn_modules and not self.lora_mlp and not self.lora_output:
            raise ValueError("no LoRA target: set lora_attn_modules, lora_mlp or lora_output")
        return self


class FinetuneBaseParams(FinetuneParams):
    """finetune_base: Korean CPT (text completion over data/kowiki/train.csv, packed)."""

    text_column: str
    english_eval_text: str
    eval_max_tokens: int = Field(ge=0)


class FinetuneInstructParams(FinetuneParams):
    """finetune_instruct: chat SFT on the LIMA mix (INSTRUCT_SETS), loss on assistant tokens only."""

    datasets: dict[str, float]
    system_prompt: str

    @model_validator(mode="after")
    def _check_mix(self):
        unknown = sorted(set(self.datasets) - set(INSTRUCT_SETS))
        if unknown:
            raise ValueError(f"datasets: unknown set(s) {unknown}; known: {list(INSTRUCT_SETS)}")
        if any(w < 0 for w in self.datasets.values()):
            raise ValueError("datasets: weights must be >= 0")
        if not any(w > 0 for w in self.datasets.values()):
            raise ValueError("datasets: every weight is 0, nothing to train on")
        return self
