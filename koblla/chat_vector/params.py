"""params.yaml section `chat_vector`: the knobs of `out = korean + ratio * (instruct - base)`."""
from __future__ import annotations

import re

from pydantic import Field, field_validator

from koblla.params import Section


class ChatVectorParams(Section):
    """Chat-vector merge: korean + ratio * (instruct - base), tensor by tensor, in bounded memory."""

    ratio: float = 1.0
    # regex -> ratio, tried in order with re.search on the HF tensor name; the first match wins, names that match
    # none use `ratio`. The Korean community recipe: {"embed_tokens|lm_head": 0.0, "norm": 0.0}.
    overrides: dict[str, float] = Field(default_factory=dict)
    # Rows copied verbatim from the instruct model into embed_tokens and lm_head (the Chat Vector paper's fix for
    # chat tokens base Llama 3 never trained: <|start_header_id|> 128006, <|end_header_id|> 128007, <|eot_id|> 128009).
    special_token_ids: list[int] = Field(default_factory=list)
    # Output shard size in MiB (HF's default is about 5 GB); shards never split a tensor.
    shard_size_mb: int = Field(default=4096, gt=0)

    @field_validator("overrides")
    @classmethod
    def _regexes_compile(cls, v: dict[str, float]) -> dict[str, float]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"override pattern {pattern!r} is not a valid regex: {e}") from None
        return v

    @field_validator("special_token_ids")
    @classmethod
    def _ids_non_negative(cls, v: list[int]) -> list[int]:
        bad = [i for i in v if i < 0]
        if bad:
            raise ValueError(f"special_token_ids must be >= 0, got {bad}")
        return v

    def ratio_for(self, name: str) -> float:
        for pattern, r in self.overrides.items():
            if re.search(pattern, name):
                return r
        return self.ratio
