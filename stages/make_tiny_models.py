"""Build tiny Llama-3-architecture stand-ins for Meta-Llama-3-8B and -Instruct (embedded default only).

python -m stages.make_tiny_models --base-out models/meta/Meta-Llama-3-8B \\
    --instruct-out models/meta/Meta-Llama-3-8B-Instruct

Trains a real byte-level BPE (Llama 3 format, specials at 128000-128255) on assets/tiny/*.txt, writes a seeded
random base model and an instruct model chat-trained for `tiny_models.instruct_steps` steps on
assets/tiny/english_chat.jsonl, both in the exact layout `tune download meta-llama/Meta-Llama-3-8B[-Instruct]`
leaves (HF safetensors shards + index, configs, tokenizer files, original/). Knobs: params.yaml `tiny_models`;
seed: `common.seed`. The real run skips this stage's outputs and points `models.base_dir`/`instruct_dir` at
Meta's downloads (docs/tiny_models.md).
"""
from __future__ import annotations

import os
import sys

# MKL may choose its summation path by buffer alignment, which changes last bits between runs; STRICT pins it (same
# speed and bytes here). It must be set before torch loads MKL, i.e. before koblla.tiny is imported below.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.params import load_section


def main(argv: list[str] | None = None) -> None:
    p = make_parser(__doc__)
    p.add_argument("--base-out", required=True, help="output folder of the tiny base checkpoint")
    p.add_argument("--instruct-out", required=True, help="output folder of the tiny instruct checkpoint")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    params = load_section("tiny_models", a.params)
    seed = load_section("common", a.params).seed

    from koblla.tiny import build_tiny_checkpoints

    s = build_tiny_checkpoints(a.base_out, a.instruct_out, params, seed)
    print(
        f"tokenizer: {s.trained_vocab} trained BPE ranks, vocab size {s.vocab_size}; "
        f"model: {s.num_params} parameters (bf16); instruct: {s.instruct_steps} steps on {s.instruct_examples} "
        f"chats, loss {s.first_loss:.4f} -> {s.final_loss:.4f}; wrote {a.base_out} and {a.instruct_out}"
    )


if __name__ == "__main__":
    sys.exit(run_stage(main))
