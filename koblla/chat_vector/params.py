"""params.yaml section `chat_vector`: the knobs of `out = korean + ratio * (instruct - base)`."""
from __future__ import annotations

import re

from pydantic import Field, field_validator

from koblla.params import Section


class ChatVectorParams(Section):
    """Chat-vector merge: korean + ratio * (instruct - base), tensor by tensor, in bounded memory.

    Values and their docs live in params.yaml only (no defaults here, so the two cannot drift)."""

    ratio: float
    overrides: dict[str, float]
    special_token_ids: list[int]
    shard_size_mb: int = Field(gt=0)

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
