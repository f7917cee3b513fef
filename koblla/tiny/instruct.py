"""The short, real chat training run that turns the tiny base into the tiny instruct model.

torchtune's own Llama 3 tokenizer formats the chats (Llama 3 chat template, `tokenize_messages`), and the loss is on
assistant tokens only (torchtune's mask). The loop is koblla.tiny.train's: a plain, seeded torch loop on CPU (the
model is ~16 M parameters and a run is tens of steps, so torchtune's recipe start-up, ~10 s, would cost more than the
training itself).
"""
from __future__ import annotations

import json
from pathlib import Path

from torchtune.data import Message
from torchtune.models.llama3 import llama3_tokenizer

from koblla.errors import InputError
from koblla.tiny.train import IGNORE


def read_chats(path: Path) -> list[list[dict]]:
    """openai-style `{"messages": [{"role", "content"}...]}` lines; user/assistant turns, assistant last."""
    chats = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            msgs = json.loads(line)["messages"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{path}:{n}: expected a JSON object with a 'messages' list ({e})") from None
        roles = [m.get("role") for m in msgs]
        if not msgs or roles[-1] != "assistant" or not set(roles) <= {"system", "user", "assistant"}:
            raise InputError(f"{path}:{n}: roles {roles} must be system/user/assistant and end with assistant")
        chats.append(msgs)
    if not chats:
        raise InputError(f"{path}: no chats found")
    return chats


def tokenize_chats(tokenizer_model: Path, chats: list[list[dict]], max_seq_len: int) -> list[tuple[list, list]]:
    """(tokens, labels) per chat; labels are the next token on assistant positions, IGNORE elsewhere."""
    tok = llama3_tokenizer(str(tokenizer_model), max_seq_len=max_seq_len)
    out = []
    for msgs in chats:
        messages = [Message(role=m["role"], content=m["content"], masked=m["role"] != "assistant") for m in msgs]
        tokens, mask = tok.tokenize_messages(messages)
        labels = [IGNORE if m else t for t, m in zip(tokens, mask, strict=True)]
        out.append((tokens[:-1], labels[1:]))
    return out
