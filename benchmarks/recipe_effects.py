"""What the recipe changes on the embedded default, from evaluate's held-out measures (evals/ko_bpb.yaml ...).

python benchmarks/recipe_effects.py            (from the repo root; no arguments)

Reads metrics/eval/<model>.json of a finished `dvc repro`; when any of the five files or measures is missing it
runs `dvc repro` first (the venv's dvc; a few minutes on 2 cores). Prints the figures, then one JSON line:
  ko_bpb_gain_koblla_vs_llama3       relative drop of Korean bits/byte after CPT: (llama3 - koblla) / llama3
  en_bpb_change_koblla_vs_llama3     relative change of English bits/byte after CPT (positive = forgetting)
  chat_nll_gain_chatvec_vs_koblla    fraction of the base -> instruct English chat-NLL gap (llama3 - llama3_inst)
                                     that the chat vector recovers on KoBLLa:
                                     (koblla - chatvec) / (llama3 - llama3_inst)
  chat_nll_ko_gain_inst_vs_chatvec   relative drop of Korean chat NLL from the chat-vector model to KoBLLa-Inst.
plus the raw values. Lower is better for every loss; a gain is positive when the later model is better.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from koblla.evaluate.report import load_models

ROOT = Path(__file__).resolve().parents[1]
MODELS = [m.key for m in load_models(ROOT / "dvc.yaml")]  # the models of the chain (dvc.yaml), in the report's order
KEYS = {"ko": "ko_bpb/bits_per_byte", "en": "en_bpb/bits_per_byte", "chat_en": "chat_nll_en/nll_per_byte",
        "chat_ko": "chat_nll_ko/nll_per_byte"}


def read_all() -> dict | None:
    out = {}
    for m in MODELS:
        path = ROOT / "metrics" / "eval" / f"{m}.json"
        if not path.is_file():
            return None
        flat = json.loads(path.read_text(encoding="utf-8"))
        if not all(k in flat for k in KEYS.values()):
            return None
        out[m] = {name: flat[k] for name, k in KEYS.items()}
    return out


def rel_drop(before: float, after: float) -> float:
    return (before - after) / before


def main() -> int:
    scores = read_all()
    if scores is None:
        dvc = shutil.which("dvc", path=str(ROOT / ".venv" / "bin")) or shutil.which("dvc")
        print(f"metrics/eval incomplete: running `{dvc} repro`", file=sys.stderr)
        env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
        subprocess.run([dvc, "repro"], cwd=ROOT, env=env, check=True)
        scores = read_all()
        if scores is None:
            raise SystemExit("metrics/eval/*.json still lack ko_bpb/en_bpb/chat_nll_*: are they in evaluate.tasks?")
    s = scores
    gap = s["llama3"]["chat_en"] - s["llama3_inst"]["chat_en"]
    result = {
        "ko_bpb_gain_koblla_vs_llama3": rel_drop(s["llama3"]["ko"], s["koblla"]["ko"]),
        "en_bpb_change_koblla_vs_llama3": (s["koblla"]["en"] - s["llama3"]["en"]) / s["llama3"]["en"],
        "chat_nll_gain_chatvec_vs_koblla": (s["koblla"]["chat_en"] - s["koblla_chatvec"]["chat_en"]) / gap
        if abs(gap) > 1e-12 else None,
        "chat_nll_en_gap_llama3_minus_inst": gap,
        "chat_nll_ko_gain_inst_vs_chatvec": rel_drop(s["koblla_chatvec"]["chat_ko"], s["koblla_inst"]["chat_ko"]),
        "ko_bpb_gain_inst_vs_llama3_inst": rel_drop(s["llama3_inst"]["ko"], s["koblla_inst"]["ko"]),
        "raw": s,
    }
    for m in MODELS:
        print(f"{m:>15}: " + ", ".join(f"{k} {v:.4f}" for k, v in s[m].items()))
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
