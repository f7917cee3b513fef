"""Regenerate lima_sample.jsonl and translation_memory.jsonl from sample.yaml (the human-edited source).

.venv/bin/python assets/lima/build_sample.py [--check]

--check compares instead of writing (exit 1 on drift). Every reference translation must pass the stage's own
validator (language, register, length ratio, copying, code blocks); the script stops naming any that fail.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from koblla.params import load_section
from koblla.translate.memory import memory_key
from koblla.translate.params import TranslateParams
from koblla.translate.pipeline import TARGET_LANG
from koblla.translate.segment import split_message
from koblla.translate.validate import Limits, check_translation

HERE = Path(__file__).resolve().parent
REFERENCE_MODEL = "koblla-reference"  # translate.model of the embedded default: human reference translations
REFERENCE_PROMPT_VERSION = "v1"  # the shipped memory's keys (a real run's prompt_version does not change them)


def build(params: TranslateParams) -> tuple[str, str, list[str]]:
    items = yaml.safe_load((HERE / "sample.yaml").read_text(encoding="utf-8"))
    limits = Limits.from_params(params)
    lima, memory, problems, seen = [], [], [], set()
    for n, item in enumerate(items):
        en = [t["en"] for t in item["turns"]]
        lima.append(json.dumps({"conversations": en, "source": item["source"]}, ensure_ascii=False) + "\n")
        for i, turn in enumerate(item["turns"]):
            src = turn["en"].strip()
            chunks = split_message(src, params.chunk_tokens)
            if len(chunks) != 1:
                problems.append(f"item {n} turn {i}: longer than chunk_tokens={params.chunk_tokens}; shorten it")
            if i % 2 == 0:
                variants = [("banmal", turn["ko"])]
            else:  # assistant: 합쇼체 (`ko`) and, where written, 해요체 (`ko_haeyo`)
                variants = [("hapsyo", turn["ko"])] + ([("haeyo", turn["ko_haeyo"])] if "ko_haeyo" in turn else [])
            for register, ko in variants:
                ko = ko.strip()
                reasons = check_translation(src, ko, register, limits)
                if reasons:
                    problems.append(f"item {n} turn {i} [{register}]: {reasons}: {ko[:60]!r}")
                key = memory_key(src, TARGET_LANG, register, REFERENCE_PROMPT_VERSION, REFERENCE_MODEL)
                if key in seen:
                    continue
                seen.add(key)
                memory.append(json.dumps({
                    "key": key, "source": src, "target_lang": TARGET_LANG, "register": register,
                    "prompt_version": REFERENCE_PROMPT_VERSION, "model": REFERENCE_MODEL, "translation": ko,
                    "backend": "human",
                }, ensure_ascii=False) + "\n")
    return "".join(lima), "".join(memory), problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    # the gate the stage runs with
    lima, memory, problems = build(load_section("translate", HERE.parents[1] / "params.yaml"))
    if problems:
        print("reference translations that fail validation:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    targets = {HERE / "lima_sample.jsonl": lima, HERE / "translation_memory.jsonl": memory}
    if a.check:
        stale = [p.name for p, text in targets.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        if stale:
            print(f"out of date: {stale}; run .venv/bin/python assets/lima/build_sample.py", file=sys.stderr)
            return 1
        return 0
    for p, text in targets.items():
        p.write_text(text, encoding="utf-8")
    print(f"wrote {lima.count(chr(10))} conversations and {memory.count(chr(10))} memory records to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
