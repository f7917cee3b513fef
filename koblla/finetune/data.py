"""Dataset builders referenced by the finetune configs (`dataset._component_`), where torchtune's own fall short.

- packed_text_dataset (finetune_base): torchtune 0.6.1's text_completion_dataset truncates every document to
  max_seq_len before packing (TextCompletionDataset._prepare_sample), so a long Wikipedia article loses all but its
  first max_seq_len tokens: on real kowiki text that drops 95% of the tokens at 256 and 70% at 2048
  (benchmarks/finetune.py). Here each document is tokenized whole (BOS ... EOS) and cut into max_seq_len pieces,
  which torchtune's PackedDataset then packs; every piece keeps its own attention block and positions 0..n-1.
- lima_mix_dataset (finetune_instruct): a weighted mix of the LIMA-ko chat sets. torchtune's `chat_dataset` reads
  one file and `ConcatDataset` (a list under `dataset:`) joins files with equal weight; neither can say "KoLIMA
  twice, a random half of BiLIMA en->ko", and a list whose length depends on params would put mix logic into the
  config writer. Each set is still read by torchtune's own `chat_dataset` (openai-style `messages`, Llama 3 chat
  template from the tokenizer, loss on assistant tokens only).

"""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from pathlib import Path

from torch.utils.data import Dataset

from koblla.errors import InputError

logger = logging.getLogger(__name__)


class _DocumentPieces:
    """Every document of `data` tokenized whole and cut into pieces of at most `max_len` tokens (what
    PackedDataset iterates: {"tokens", "labels"} per piece; len() counts documents, for its progress bar)."""

    def __init__(self, tokenizer, data, column: str, add_eos: bool, max_len: int):
        self.tokenizer, self.data, self.column, self.add_eos, self.max_len = tokenizer, data, column, add_eos, max_len

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        for row in self.data:
            ids = self.tokenizer.encode(row[self.column] or "", add_bos=True, add_eos=self.add_eos)
            for i in range(0, len(ids), self.max_len):
                piece = ids[i:i + self.max_len]
                yield {"tokens": piece, "labels": list(piece)}


def packed_text_dataset(
    tokenizer,
    *,
    source: str,
    column: str = "text",
    add_eos: bool = True,
    split: str = "train",
    packed: bool = True,
    **load_dataset_kwargs,
):
    """Text completion over whole documents, packed to tokenizer.max_seq_len with nothing truncated.

    Args match torchtune's text_completion_dataset (source/data_files/column/split/add_eos, extra keywords go to
    datasets.load_dataset). packed=False falls back to text_completion_dataset itself (one truncated document
    per row, padded per batch): no reason to use it for CPT except comparison.
    """
    from datasets import load_dataset
    from torchtune.datasets import PackedDataset, text_completion_dataset

    if not packed:
        return text_completion_dataset(tokenizer, source=source, column=column, add_eos=add_eos, split=split,
                                       packed=False, **load_dataset_kwargs)
    if tokenizer.max_seq_len is None:
        raise InputError("packed_text_dataset needs tokenizer.max_seq_len (the pack size)")
    data = load_dataset(source, split=split, **load_dataset_kwargs)
    pieces = _DocumentPieces(tokenizer, data, column, add_eos, tokenizer.max_seq_len)
    # split_across_pack: a piece that does not fit the current pack continues in the next one (no padding);
    # pieces are <= max_seq_len, so positions inside a pack never wrap around.
    return PackedDataset(pieces, max_seq_len=tokenizer.max_seq_len, padding_idx=tokenizer.pad_id,
                         split_across_pack=True)


class _Indexed(Dataset):
    """Samples of several datasets, in a fixed list of (dataset, index) pairs."""

    def __init__(self, parts: list[Dataset], index: list[tuple[int, int]]):
        self.parts, self.index = parts, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        d, j = self.index[i]
        return self.parts[d][j]


def mix_indices(sizes: Mapping[str, int], weights: Mapping[str, float], seed: int) -> list[tuple[str, int]]:
    """(set name, record index) pairs: floor(w) full copies of each set plus a seeded random frac(w) share."""
    rng = random.Random(seed)
    out: list[tuple[str, int]] = []
    for name, w in weights.items():
        n = sizes[name]
        whole, frac = int(math.floor(w)), w - math.floor(w)
        out += [(name, j) for _ in range(whole) for j in range(n)]
        out += [(name, j) for j in sorted(rng.sample(range(n), round(frac * n)))]
    return out


def lima_mix_dataset(
    tokenizer,
    *,
    data_dir: str,
    weights: Mapping[str, float],
    new_system_prompt: str | None = None,
    train_on_input: bool = False,
    packed: bool = False,
    seed: int = 0,
):
    """Build the SFT mix from `<data_dir>/<name>.jsonl` files (openai-style `messages` per line).

    Args:
        tokenizer: torchtune Llama 3 tokenizer (its max_seq_len truncates, and sets the pack size).
        weights: set name -> weight (see FinetuneInstructParams.datasets); 0 leaves a set out.
        new_system_prompt: replaces every record's system turn when given ("" or None keeps them).
        train_on_input: False masks system/user tokens out of the loss.
        packed: pack samples into tokenizer.max_seq_len sequences (each keeps its own attention block).
        seed: which records a fractional weight picks.
    """
    from torchtune.datasets import PackedDataset, chat_dataset

    used = {name: float(w) for name, w in weights.items() if w and w > 0}
    parts, sizes = {}, {}
    for name in used:
        path = Path(data_dir) / f"{name}.jsonl"
        if not path.is_file():
            raise InputError(f"{path}: missing (finetune_instruct.datasets lists {name!r}; run the translate stage)")
        parts[name] = chat_dataset(
            tokenizer,
            source="json",
            data_files=str(path),
            split="train",
            conversation_column="messages",
            conversation_style="openai",
            train_on_input=train_on_input,
            new_system_prompt=new_system_prompt or None,
            packed=False,
        )
        sizes[name] = len(parts[name])
    pairs = mix_indices(sizes, used, seed)
    if not pairs:
        raise InputError(f"{data_dir}: the instruct mix {used} has no records")
    names = list(parts)
    ds = _Indexed([parts[n] for n in names], [(names.index(n), j) for n, j in pairs])
    logger.info("instruct mix: %d samples from %s", len(ds), {n: sizes[n] for n in names})
    if packed:
        if tokenizer.max_seq_len is None:
            raise InputError("packed: true needs tokenizer.max_seq_len")
        return PackedDataset(ds, max_seq_len=tokenizer.max_seq_len, padding_idx=tokenizer.pad_id)
    return ds
