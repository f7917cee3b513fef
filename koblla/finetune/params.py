"""params.yaml sections `finetune_base` and `finetune_instruct`: the knobs of the two torchtune LoRA runs.

The stage fills the `???` keys of configs/finetune_*.yaml from these fields (koblla.finetune.tune_config) and hands
torchtune the finished config file; the YAMLs keep torchtune's structure, params.yaml keeps the tuned values.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from koblla.params import Section

LoraAttnModule = Literal["q_proj", "k_proj", "v_proj", "output_proj"]
INSTRUCT_SETS = ("kolima", "bilima_en_ko", "bilima_ko_en")


class FinetuneParams(Section):
    """Knobs shared by both LoRA stages."""

    # ---- scale: one device -> lora_finetune_single_device; more -> lora_finetune_distributed under torchrun ----
    device: Literal["cpu", "cuda"] = "cpu"
    dtype: Literal["fp32", "bf16"] = "fp32"
    nproc_per_node: int = Field(1, ge=1)  # processes (GPUs) per node
    nnodes: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0)  # this machine's rank; only node 0 publishes outputs
    rdzv_endpoint: str = ""  # host:port of node 0, required when nnodes > 1
    compile: bool = False
    activation_checkpointing: bool = False
    activation_offloading: bool = False
    # ---- schedule ----
    max_seq_len: int = Field(256, ge=8)
    batch_size: int = Field(2, ge=1)  # per device
    gradient_accumulation_steps: int = Field(1, ge=1)
    epochs: int = Field(2, ge=1)  # torchtune checkpoints (resumably) at each epoch end
    max_steps_per_epoch: Optional[int] = Field(None, ge=1)  # null: whole epoch
    lr: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    clip_grad_norm: float = Field(1.0, gt=0)  # also what makes torchtune log grad_norm
    # ---- LoRA ----
    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_attn_modules: list[LoraAttnModule] = ["q_proj", "k_proj", "v_proj", "output_proj"]
    lora_mlp: bool = True
    lora_output: bool = False
    use_dora: bool = False
    packed: bool = True
    # ---- outputs ----
    save_dtype: Literal["bf16", "fp32"] = "bf16"  # dtype of the published weights (bf16 halves disk and DVC cache)
    keep_scratch: bool = False  # keep scratch/<stage>/<hash>/ (every epoch's merged weights) after publishing
    # Any other torchtune key, by dotted name -> value (e.g. {"optimizer.betas": [0.9, 0.95]}); not a key the
    # stage fills from the fields above.
    tune_overrides: dict[str, Any] = {}

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

    text_column: str = "text"
    # Held-out loss after training, on data/kowiki/dev.csv (Korean) and this English text (retention).
    english_eval_text: str = "assets/eval_text/english_heldout.txt"
    eval_max_tokens: int = Field(8192, ge=0)  # per held-out set; 0 skips the held-out evaluation


class FinetuneInstructParams(FinetuneParams):
    """finetune_instruct: chat SFT on the LIMA-ko mix, loss on assistant tokens only."""

    packed: bool = False  # chat samples are short and uneven; packing helps on GPUs with long max_seq_len
    # Which sets of data/lima_ko/<name>.jsonl to mix, and how often: 1.0 = every record once, 2.0 = twice,
    # 0.5 = a random half (seeded). 0 or absent = not used.
    datasets: dict[str, float] = {name: 1.0 for name in INSTRUCT_SETS}
    system_prompt: str = ""  # "" keeps the records' own system turns; text replaces them in every record

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
