"""params.yaml `tiny_models`: shape and training knobs of the embedded default's tiny Llama-3 stand-ins."""
from __future__ import annotations

from pydantic import Field, model_validator

from koblla.params import Section


class TinyModelsParams(Section):
    """A tiny Llama-3-architecture base/instruct pair (vocab 128256, like Meta's, so every id is valid).

    Values and their docs live in params.yaml only (no defaults here, so the two cannot drift)."""

    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    embed_dim: int = Field(ge=8)
    intermediate_dim: int = Field(ge=8)
    bpe_vocab_size: int = Field(ge=512, le=128000)
    bpe_min_frequency: int = Field(ge=1)
    pretrain_steps: int = Field(ge=0)
    pretrain_lr: float = Field(gt=0)
    pretrain_batch_size: int = Field(ge=1)
    pretrain_seq_len: int = Field(ge=16)
    korean_share: float = Field(ge=0.0, lt=1.0)
    instruct_steps: int = Field(ge=1)
    instruct_lr: float = Field(gt=0)
    instruct_batch_size: int = Field(ge=1)
    instruct_max_seq_len: int = Field(ge=32)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelsParams:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")
        if (self.embed_dim // self.num_heads) % 2:
            raise ValueError("head dim (embed_dim / num_heads) must be even for rotary embeddings")
        return self
