"""params.yaml `tiny_models`: shape and training knobs of the embedded default's tiny Llama-3 stand-ins."""
from __future__ import annotations

from pydantic import Field, model_validator

from koblla.params import Section


class TinyModelsParams(Section):
    """A tiny Llama-3-architecture base/instruct pair (vocab 128256, like Meta's, so every id is valid)."""

    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    embed_dim: int = Field(64, ge=8)
    intermediate_dim: int = Field(224, ge=8)
    # Byte-level BPE trained on assets/tiny/*.txt; ranks above it up to 128000 are unreachable padding.
    bpe_vocab_size: int = Field(6000, ge=512, le=128000)
    bpe_min_frequency: int = Field(2, ge=1)
    # Base pretraining (koblla/tiny/pretrain.py): next-token loss on our English text + a Korean share.
    pretrain_steps: int = Field(120, ge=0)  # 0 = a random base (as before)
    pretrain_lr: float = Field(0.003, gt=0)
    pretrain_batch_size: int = Field(4, ge=1)  # windows per step
    pretrain_seq_len: int = Field(128, ge=16)  # tokens per window
    korean_share: float = Field(0.1, ge=0.0, lt=1.0)  # of the pretraining bytes (Llama 3: mostly English)
    instruct_steps: int = Field(40, ge=1)
    instruct_lr: float = Field(0.001, gt=0)
    instruct_batch_size: int = Field(4, ge=1)
    instruct_max_seq_len: int = Field(256, ge=32)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelsParams:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")
        if (self.embed_dim // self.num_heads) % 2:
            raise ValueError("head dim (embed_dim / num_heads) must be even for rotary embeddings")
        return self
