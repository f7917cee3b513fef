"""Tiny Llama-3-architecture stand-ins for Meta-Llama-3-8B and -Instruct, in the exact `tune download` layout.

`make_tiny_checkpoints(base_dir, instruct_dir, params, seed)` trains a real byte-level BPE on assets/tiny/*.txt,
builds a seeded random base model, trains the instruct model from it on assets/tiny/english_chat.jsonl, and
writes both folders atomically. Same inputs + seed -> byte-identical files.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from koblla.atomic import atomic_dir
from koblla.errors import InputError
from koblla.tiny.params import TinyModelsParams

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "tiny"
CORPUS_FILES = ("korean.txt", "english.txt")
CHAT_FILE = "english_chat.jsonl"


@dataclass(frozen=True)
class TinyStats:
    trained_vocab: int  # BPE ranks learnt from text (the rest up to 128000 is unreachable padding)
    vocab_size: int  # model/tokenizer vocab, as Meta's: 128256
    num_params: int
    instruct_steps: int
    instruct_examples: int
    first_loss: float
    final_loss: float


def read_corpus(assets: Path = ASSETS) -> list[str]:
    """Paragraphs of our own Korean and English prose (blank-line separated)."""
    texts = []
    for name in CORPUS_FILES:
        path = assets / name
        if not path.is_file():
            raise InputError(f"{path}: tokenizer training text is missing (it ships in the repo under assets/tiny/)")
        texts += [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return texts


def build_base_model(params: TinyModelsParams, seed: int):
    from torchtune.models.llama3 import llama3

    from koblla.tiny.layout import MAX_SEQ_LEN, NORM_EPS, ROPE_THETA, VOCAB_SIZE

    torch.manual_seed(seed)
    model = llama3(
        vocab_size=VOCAB_SIZE, num_layers=params.num_layers, num_heads=params.num_heads,
        num_kv_heads=params.num_kv_heads, embed_dim=params.embed_dim, max_seq_len=MAX_SEQ_LEN,
        intermediate_dim=params.intermediate_dim, norm_eps=NORM_EPS, rope_base=int(ROPE_THETA),
    )
    # What gets written is bf16: round now so instruct training starts from exactly the saved base weights.
    with torch.no_grad():
        for t in model.state_dict().values():
            t.copy_(t.to(torch.bfloat16).float())
    return model


def build_tiny_checkpoints(
    base_dir: str | os.PathLike, instruct_dir: str | os.PathLike, params: TinyModelsParams, seed: int,
    assets: Path = ASSETS,
) -> TinyStats:
    from koblla.tiny import instruct as ins
    from koblla.tiny import layout, tokenizer
    from koblla.tiny import pretrain as pt
    from koblla.tiny.train import train

    texts = read_corpus(assets)
    chats = ins.read_chats(assets / CHAT_FILE)
    trained = tokenizer.train_ranks(texts, params.bpe_vocab_size, params.bpe_min_frequency)
    ranks = tokenizer.pad_ranks(trained)
    hf_tok = tokenizer.build_hf_tokenizer(ranks)
    log.info("trained BPE: %d ranks (padded to %d)", len(trained), len(ranks))

    with atomic_dir(base_dir) as tmp_base, atomic_dir(instruct_dir) as tmp_inst:
        model = build_base_model(params, seed)
        for out, is_instruct in ((tmp_base, False), (tmp_inst, True)):
            tokenizer.write_tokenizer_files(out, ranks, hf_tok, instruct=is_instruct)
            _write_notes(out, is_instruct)
        if params.pretrain_steps:
            docs, nbytes = pt.pretrain_texts(assets.parent, params.korean_share)
            windows = pt.pretrain_examples(tmp_base / "original" / "tokenizer.model", docs, params.pretrain_seq_len)
            log.info("pretraining the base: %d documents (%d English / %d Korean bytes), %d windows of %d tokens",
                     len(docs), nbytes["en"], nbytes["ko"], len(windows), params.pretrain_seq_len)
            pre_losses = train(model, windows, params.pretrain_steps, params.pretrain_lr, params.pretrain_batch_size,
                               seed, "pretrain")
            log.info("pretraining loss %.4f -> %.4f", pre_losses[0], pre_losses[-1])
            pt.round_to_bf16(model)
        base_sd = {k: v.clone() for k, v in model.state_dict().items()}
        num_params = layout.write_checkpoint(tmp_base, base_sd, params, instruct=False)

        examples = ins.tokenize_chats(tmp_base / "original" / "tokenizer.model", chats, params.instruct_max_seq_len)
        losses = train(
            model, examples, params.instruct_steps, params.instruct_lr, params.instruct_batch_size, seed, "instruct"
        )
        layout.write_checkpoint(tmp_inst, model.state_dict(), params, instruct=True)
        for out in (tmp_base, tmp_inst):
            _make_readable(out)
    return TinyStats(len(trained), layout.VOCAB_SIZE, num_params, params.instruct_steps, len(examples),
                     losses[0], losses[-1])


def make_tiny_checkpoints(
    base_dir: str | os.PathLike, instruct_dir: str | os.PathLike, params: TinyModelsParams, seed: int
) -> None:
    """Write the tiny base and instruct checkpoints (tune-download layout, bf16) into base_dir and instruct_dir."""
    build_tiny_checkpoints(base_dir, instruct_dir, params, seed)


def _make_readable(root: Path) -> None:
    """Temp dirs/files are created private (0700/0600); a downloaded checkpoint is world-readable."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _write_notes(out: Path, instruct: bool) -> None:
    from koblla.tiny.layout import repo_id

    name = repo_id(instruct)
    (out / "README.md").write_text(
        f"# Tiny stand-in for {name}\n\n"
        "Built by KoBLLa's `make_tiny_models` stage (koblla/tiny) for the embedded default pipeline and tests.\n"
        "It has the file layout `tune download` leaves and Llama 3's architecture, vocab size and special tokens,\n"
        "but it is NOT Meta's model: a ~16 M parameter random-init model"
        + (" briefly chat-trained on a few English exchanges" if instruct else "")
        + ",\nwith a small BPE tokenizer trained on KoBLLa's own sample text. Its outputs are meaningless.\n"
        "For the real run, replace this folder with `tune download " + name + " --output-dir DIR`.\n",
        encoding="utf-8",
    )
    (out / "LICENSE").write_text(
        "These tiny stand-in weights and tokenizer were generated from scratch by the KoBLLa project; they contain\n"
        "no Meta weights or Meta tokenizer data and are not covered by the Meta Llama 3 Community License.\n"
        "They are released under the same license as the KoBLLa repository.\n",
        encoding="utf-8",
    )
