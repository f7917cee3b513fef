"""Translation backends: memory (offline default), openai (any OpenAI-compatible endpoint), hf (local model)."""
from __future__ import annotations

from koblla.errors import ParamsError


def make_backend(params, prompt, limits):
    if params.backend == "memory":
        from koblla.translate.backends.memory import MemoryBackend

        return MemoryBackend(params, prompt, limits)
    if params.backend == "openai":
        from koblla.translate.backends.openai import OpenAIBackend

        return OpenAIBackend(params, prompt, limits)
    if params.backend == "hf":
        from koblla.translate.backends.hf import HFBackend

        return HFBackend(params, prompt, limits)
    raise ParamsError(f"translate.backend: unknown backend {params.backend!r}; use memory, openai or hf")
