"""The training loop of the tiny models: the base's pretraining (koblla/tiny/pretrain.py) and the instruct run
(koblla/tiny/instruct.py). A plain, seeded torch loop on a fixed number of CPU threads (THREADS), so the written
files are byte-identical per seed; each run logs its steps under its own label ("pretrain step 11/120 ...",
"instruct step 11/40 ...")."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torchtune.modules import TransformerDecoder

log = logging.getLogger(__name__)
IGNORE = -100  # torchtune's CROSS_ENTROPY_IGNORE_IDX
# Fixed, never the machine's core count: the kernels split work by thread count, so the count is part of what makes
# the bytes. Measured here (20 pretraining + 5 instruct steps): 1 and 2 threads write byte-identical files, and 2 take
# 20.1 s instead of 26.9 s for the whole stage; the default stage's output still matches the committed dvc.lock
# (tests/test_tiny_models.py::test_stage_output_matches_the_committed_lock).
THREADS = 2


def _batch(examples: list[tuple[list, list]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(t) for t, _ in examples)
    tokens = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, (t, lab) in enumerate(examples):
        tokens[i, : len(t)] = torch.tensor(t)
        labels[i, : len(lab)] = torch.tensor(lab)
    return tokens, labels


def labelled_loss(model: TransformerDecoder, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions that carry a label (the instruct run: assistant positions; pretraining:
    every token but padding). Same value as the full forward + ignore_index, but the 128256-wide output layer runs
    only on those (in the instruct run ~25 % of positions): [b, s, 128256] fp32 logits would be ~0.4 GB per step
    there and dominate the CPU time."""
    h = model.tok_embeddings(tokens)
    for layer in model.layers:
        h = layer(h)  # no mask: causal self-attention; right padding never reaches earlier positions
    sel = labels != IGNORE
    logits = model.output(model.norm(h)[sel]).float()
    return F.cross_entropy(logits, labels[sel])


def train(
    model: TransformerDecoder,
    examples: list[tuple[list, list]],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    label: str,
    pad_id: int = 128004,
) -> list[float]:
    """Train in place (fp32, AdamW without weight decay so embedding rows of unseen tokens stay exactly equal to
    the base); return the loss per step.

    THREADS CPU threads whatever the machine: float sums then always run in the same order, so the bf16 files are
    byte-identical across runs and core counts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _train(model, examples, steps, lr, batch_size, seed, label, pad_id)
    finally:
        torch.set_num_threads(threads)


def _train(model, examples, steps, lr, batch_size, seed, label, pad_id) -> list[float]:
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
        loss = labelled_loss(model, tokens, labels)
        opt.zero_grad(set_to_none=False)  # reuse grad buffers: reallocating 66 MB a step costs page faults
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            log.info("%s step %d/%d loss %.4f", label, step + 1, steps, losses[-1])
    model.eval()
    return losses
