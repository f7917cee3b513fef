"""Talk to any model of the chain: Llama 3 chat template, tokens streamed as they are generated.

A model folder without a chat template (Meta-Llama-3-8B, KoBLLa base) gets Llama 3's own template, so every model
of the chain can be compared on the same conversation.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# Meta-Llama-3-8B-Instruct's template (tokenizer_config.json), used when a folder ships none.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer) -> bool:
    """Give `tokenizer` Llama 3's template if it has none; True when the folder's own template is used."""
    if getattr(tokenizer, "chat_template", None):
        return True
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    return False


class Chat:
    """A conversation with one loaded model; `reply` streams the answer's text through `on_text` as it is made."""

    def __init__(self, model, tokenizer, system_prompt: str = "", max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0):
        self.model, self.tokenizer = model, tokenizer
        self.own_template = ensure_chat_template(tokenizer)
        self.system_prompt = system_prompt
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.messages: list[dict] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    def reply(self, user_text: str, on_text: Callable[[str], None]) -> str:
        import torch
        from transformers import TextStreamer

        from koblla.evaluate.generate import stop_token_ids

        class _Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    on_text(text)

        self.messages.append({"role": "user", "content": user_text})
        prompt = self.tokenizer.apply_chat_template(self.messages, tokenize=False, add_generation_prompt=True)
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        sample = self.temperature > 0
        kwargs = (dict(do_sample=True, temperature=self.temperature, top_p=self.top_p) if sample
                  else dict(do_sample=False))
        streamer = _Streamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        with torch.no_grad():
            out = self.model.generate(
                **enc, max_new_tokens=self.max_new_tokens, max_length=None, streamer=streamer,
                eos_token_id=stop_token_ids(self.model, self.tokenizer),
                pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                else self.tokenizer.eos_token_id,
                **kwargs,
            )
        answer = self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        self.messages.append({"role": "assistant", "content": answer})
        return answer
