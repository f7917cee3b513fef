"""The short, real chat training run that turns the tiny base into the tiny instruct model.

torchtune's own Llama 3 tokenizer formats the chats (Llama 3 chat template, `tokenize_messages`), and the loss is on
assistant tokens only (torchtune's mask). A plain, seeded torch loop on CPU: the model is ~16 M parameters and a
run is tens of steps, so torchtune's recipe start-up (~10 s) would cost more than the training itself.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torchtune.data import Message
from torchtune.models.llama3 import llama3_tokenizer
from torchtune.modules import TransformerDecoder

from koblla.errors import InputError

log = logging.getLogger(__name__)
IGNORE = -100  # torchtune's CROSS_ENTROPY_IGNORE_IDX


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


def _batch(examples: list[tuple[list, list]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(t) for t, _ in examples)
    tokens = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, (t, lab) in enumerate(examples):
        tokens[i, : len(t)] = torch.tensor(t)
        labels[i, : len(lab)] = torch.tensor(lab)
    return tokens, labels


def assistant_loss(model: TransformerDecoder, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over assistant positions. Same value as the full forward + ignore_index, but the
    128256-wide output layer runs only on the ~25 % of positions that carry a label: [b, s, 128256] fp32 logits
    would be ~0.4 GB per step here and dominate the CPU time."""
    h = model.tok_embeddings(tokens)
    for layer in model.layers:
        h = layer(h)  # no mask: causal self-attention; right padding never reaches earlier positions
    sel = labels != IGNORE
    logits = model.output(model.norm(h)[sel]).float()
    return F.cross_entropy(logits, labels[sel])


def train_instruct(
    model: TransformerDecoder,
    examples: list[tuple[list, list]],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    pad_id: int = 128004,
) -> list[float]:
    """Train in place (fp32, AdamW without weight decay so embedding rows of unseen tokens stay exactly equal to
    the base); return the loss per step.

    One CPU thread: float sums then always run in the same order, so the bf16 files are byte-identical across
    runs and core counts (and on this model one thread is as fast as two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, examples, steps, lr, batch_size, seed, pad_id)
    finally:
        torch.set_num_threads(threads)


def _train(model, examples, steps, lr, batch_size, seed, pad_id) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
    model.train()
    losses: list[float] = []
    order: list[int] = []
    for step in range(steps):
        if len(order) < batch_size:  # reshuffle each epoch; seeded, so runs repeat exactly
            order += torch.randperm(len(examples), generator=gen).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        tokens, labels = _batch([examples[i] for i in idx], pad_id)
        loss = assistant_loss(model, tokens, labels)
        opt.zero_grad(set_to_none=False)  # reuse grad buffers: reallocating 66 MB a step costs page faults
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            log.info("instruct step %d/%d loss %.4f", step + 1, steps, losses[-1])
    model.eval()
    return losses
