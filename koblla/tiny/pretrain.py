"""The tiny base's own pretraining: next-token prediction on text we wrote, mostly English, some Korean.

Llama 3's pretraining mix is mostly English with a few percent of other languages; the tiny base gets the same
shape in miniature, so the embedded default has English to retain and Korean to gain: held-out English bits per
byte (evaluate's en_bpb) drop well below a random model's, Korean stays weak until finetune_base. The text:
assets/tiny/english.txt, the English side of assets/tiny/english_chat.jsonl and of the LIMA-schema sample
(assets/lima/lima_sample.jsonl, as plain prose), plus the first `korean_share` (by bytes) of assets/tiny/korean.txt.
None of it is an evaluation set (evals/data/, assets/eval_text/, the kowiki sample's test split).
The loop is the instruct run's (koblla.tiny.train: plain, seeded, a fixed thread count), so the files are
byte-identical per seed.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torchtune.models.llama3 import llama3_tokenizer

from koblla.errors import InputError

log = logging.getLogger(__name__)


def pretrain_texts(assets: Path, korean_share: float) -> tuple[list[str], dict[str, int]]:
    """(documents, bytes per language): English prose and chat turns, then Korean paragraphs up to korean_share."""
    english: list[str] = []
    eng_txt = assets / "tiny" / "english.txt"
    if not eng_txt.is_file():
        raise InputError(f"{eng_txt}: pretraining text is missing (it ships in the repo)")
    english += [p.strip() for p in eng_txt.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    for path, key in ((assets / "tiny" / "english_chat.jsonl", "messages"),
                      (assets / "lima" / "lima_sample.jsonl", "conversations")):
        if not path.is_file():
            raise InputError(f"{path}: pretraining text is missing (it ships in the repo)")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                turns = json.loads(line)[key]
                english.append("\n\n".join(t["content"] if isinstance(t, dict) else t for t in turns))
    n_en = sum(len(t.encode()) for t in english)
    # korean_share of the whole mix, in bytes: ko = share / (1 - share) * en
    budget = korean_share / (1.0 - korean_share) * n_en
    korean: list[str] = []
    paras = [p.strip() for p in (assets / "tiny" / "korean.txt").read_text(encoding="utf-8").split("\n\n") if p.strip()]
    n_ko = 0
    for p in paras:
        if n_ko >= budget:
            break
        korean.append(p)
        n_ko += len(p.encode())
    return english + korean, {"en": n_en, "ko": n_ko}


def pretrain_examples(tokenizer_model: Path, texts: list[str], seq_len: int) -> list[tuple[list, list]]:
    """BOS text EOS, documents concatenated and cut into windows of seq_len (tokens, next-token labels)."""
    tok = llama3_tokenizer(str(tokenizer_model))
    stream: list[int] = []
    for t in texts:
        stream += tok.encode(t, add_bos=True, add_eos=True)
    windows = [stream[i: i + seq_len + 1] for i in range(0, len(stream) - 1, seq_len)]
    return [(w[:-1], w[1:]) for w in windows if len(w) > 1]


def round_to_bf16(model: torch.nn.Module) -> None:
    """What gets written is bf16: round in place so the next step starts from exactly the saved weights."""
    with torch.no_grad():
        for t in model.state_dict().values():
            t.copy_(t.to(torch.bfloat16).float())
