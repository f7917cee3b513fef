"""Write KoLIMA / BiLIMA as openai-style `messages` JSONL (torchtune chat_dataset reads it) + a side-by-side file.

All three datasets come from the same translation of each turn:
- kolima.jsonl: every turn Korean (user 반말, assistant 존댓말)
- bilima_en_ko.jsonl: English user turns, Korean assistant turns
- bilima_ko_en.jsonl: Korean user turns, English assistant turns
- lima_en.jsonl: the English source conversations, unchanged (all of them: no translation involved), for
  English retention in the instruct mix
Conversations with a flagged turn are left out of the three translated datasets; side_by_side.jsonl marks every
turn with the quality-gate checks it passed (`checks`) and flagged turns with their reasons (`flags`).
"""
from __future__ import annotations

import json
from pathlib import Path

from koblla.atomic import atomic_dir
from koblla.translate.pipeline import Translated

DATASETS = {
    "kolima": ("ko", "ko"),  # (user language, assistant language)
    "bilima_en_ko": ("en", "ko"),
    "bilima_ko_en": ("ko", "en"),
}


def to_messages(en: list[str], ko: list[str], user_lang: str, assistant_lang: str, system_prompt: str) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for i, (e, k) in enumerate(zip(en, ko, strict=True)):
        user = i % 2 == 0
        lang = user_lang if user else assistant_lang
        msgs.append({"role": "user" if user else "assistant", "content": k if lang == "ko" else e})
    return msgs


def _line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def write_outputs(results: list[Translated], out_dir: str | Path, system_prompt: str = "") -> dict[str, int]:
    """Write the five files into `out_dir` atomically; returns rows written per file."""
    counts = {name: 0 for name in DATASETS} | {"lima_en": 0, "side_by_side": 0}
    with atomic_dir(out_dir) as tmp:
        files = {name: open(tmp / f"{name}.jsonl", "w", encoding="utf-8") for name in counts}
        try:
            for tr in results:
                c = tr.conv
                files["side_by_side"].write(_line({
                    "id": c.id, "source": c.source, "en": list(c.turns), "ko": tr.korean,
                    "flags": {str(i): r for i, r in tr.flags.items()},
                    "checks": {str(i): r for i, r in tr.checks.items()},
                }))
                counts["side_by_side"] += 1
                msgs = to_messages(list(c.turns), list(c.turns), "en", "en", system_prompt)
                files["lima_en"].write(_line({"id": c.id, "source": c.source, "messages": msgs}))
                counts["lima_en"] += 1
                if not tr.ok:
                    continue
                for name, (ul, al) in DATASETS.items():
                    msgs = to_messages(list(c.turns), tr.korean, ul, al, system_prompt)
                    files[name].write(_line({"id": c.id, "source": c.source, "messages": msgs}))
                    counts[name] += 1
        finally:
            for f in files.values():
                f.close()
    return counts
