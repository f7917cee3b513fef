"""The `memory` backend: serves only what the translation memory holds (the offline embedded default)."""
from __future__ import annotations

from koblla.translate.backends.base import Backend, BackendError

HOW_TO = (
    "To translate them, configure a backend in params.yaml, e.g. for Gemini's OpenAI-compatible endpoint:\n"
    "  translate.backend: openai\n  translate.model: gemini-2.5-flash   (list your key's models: docs/translate.md)\n"
    "  translate.prompt_version: v2\n"
    "  translate.openai.base_url: https://generativelanguage.googleapis.com/v1beta/openai/\n"
    "  translate.openai.api_key_env: GEMINI_API_KEY   (and export GEMINI_API_KEY=...)\n"
    "or translate.backend: hf with translate.hf.model_path: /path/to/local/chat-model (see docs/translate.md).\n"
    "Memory keys include the model name, the prompt version and the register: changing translate.model,\n"
    "translate.prompt_version or translate.assistant_register makes earlier translations misses."
)


class MemoryBackend(Backend):
    name = "memory"

    def run(self, jobs, accept):
        if not jobs:
            return {}
        shown = "\n".join(
            f"  {j.where} [{j.register}]: {j.source[:70].replace(chr(10), ' ')!r}{'...' if len(j.source) > 70 else ''}"
            for j in jobs[:20]
        )
        more = f"\n  ... and {len(jobs) - 20} more" if len(jobs) > 20 else ""
        raise BackendError(
            f"translate.backend is memory, and {len(jobs)} chunk(s) are not in the translation memory "
            f"(model {self.params.model!r}, prompt {self.params.prompt_version}):\n{shown}{more}\n{HOW_TO}"
        )
