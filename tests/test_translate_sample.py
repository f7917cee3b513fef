"""The shipped LIMA-schema sample and its reference translations: in sync with sample.yaml, and every reference
translation passes the stage's own validator (user turns 반말, assistant turns 합쇼체 and 해요체, code verbatim)."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml

from koblla.text.register import count_registers
from koblla.text.verbatim import mask


def test_jsonl_files_match_sample_yaml(repo_root):
    out = subprocess.run([sys.executable, "assets/lima/build_sample.py", "--check"], cwd=repo_root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_reference_translations_keep_verbatim_spans_and_registers(repo_root):
    items = yaml.safe_load((repo_root / "assets/lima/sample.yaml").read_text(encoding="utf-8"))
    assert 12 <= len(items) <= 16
    for n, item in enumerate(items):
        for i, turn in enumerate(item["turns"]):
            variants = [("banmal", "ko")] if i % 2 == 0 else [("hapsyo", "ko"), ("haeyo", "ko_haeyo")]
            for want, field in variants:
                for span in mask(turn["en"]).spans:
                    assert span in turn[field], f"item {n} turn {i} {field}: {span!r} not verbatim"
                c = count_registers(turn[field])
                assert c.evidenced and c.sentences[want] == c.evidenced, (n, i, field, dict(c.sentences))
    memory = [json.loads(x) for x in (repo_root / "assets/lima/translation_memory.jsonl").read_text().splitlines()]
    n_turns = sum(len(it["turns"]) for it in items)
    assert len(memory) == n_turns + n_turns // 2  # user 반말 + assistant 합쇼체 + assistant 해요체
