"""Add the chat vector (instruct - base) to the Korean-trained model: the init for instruction tuning.

python -m stages.chat_vector --korean models/koblla-base --base models/meta/Meta-Llama-3-8B \\
    --instruct models/meta/Meta-Llama-3-8B-Instruct --out models/koblla-chatvec --metrics metrics/chat_vector.json

out = korean + ratio * (instruct - base), tensor by tensor, computed in float64 and rounded once to the models'
dtype (bf16, fp16 or fp32), streamed block by block (peak RSS well under 1 GB for any model size). Reads
params.yaml's chat_vector section: ratio, overrides (regex -> ratio, first match wins), special_token_ids (rows
copied from instruct into embed_tokens and lm_head), shard_size_mb.
Inputs: HF safetensors dirs (single file or sharded, as torchtune and `tune download` write them). The output dir
(replaced atomically) holds sharded safetensors + index, korean's config.json with instruct's eos, and instruct's
tokenizer files, chat template, generation_config and original/tokenizer.model + params.json.

Sweep the ratio:  dvc exp run -S chat_vector.ratio=0.5
Community recipe (keep embeddings and norms Korean):
  dvc exp run -S 'chat_vector.overrides={"embed_tokens|lm_head": 0.0, "norm": 0.0}'
"""
from __future__ import annotations

import sys
from pathlib import Path

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.errors import InputError
from koblla.params import load_section, require_path
from koblla.runlog import write_metrics


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--korean", required=True, help="the Korean-trained model (HF dir), e.g. models/koblla-base")
    p.add_argument("--base", required=True, help="the base model it was trained from (params models.base_dir)")
    p.add_argument("--instruct", required=True, help="the instruct model (params models.instruct_dir)")
    p.add_argument("--out", required=True, help="output model dir (replaced atomically)")
    p.add_argument("--metrics", required=True, help="metrics JSON to write")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    params = load_section("chat_vector", a.params)
    require_path("models.base_dir", a.base, "any")
    require_path("models.instruct_dir", a.instruct, "any")
    if not Path(a.korean).exists():
        raise InputError(f"--korean {a.korean}: does not exist (run the finetune_base stage first: "
                         "dvc repro finetune_base)")
    from koblla.chat_vector import apply_chat_vector  # imports numba: keep --help fast

    m = apply_chat_vector(a.korean, a.base, a.instruct, a.out, params)
    write_metrics(a.metrics, m)
    print(
        f"chat_vector: {m['tensors']} tensors, {m['parameters']} parameters, {m['shards']} shard(s) "
        f"({m['output_bytes'] / 2**20:.1f} MiB {m['dtype']}), ratio {m['ratio']}, "
        f"{m['special_token_rows']} special-token rows copied, vector norm {m['vector_norm']['total']:.4g}, "
        f"relative change {m['relative_change']['total']:.4g}, {m['seconds']} s, peak RSS {m['peak_rss_mb']} MB "
        f"-> {a.out}"
    )


if __name__ == "__main__":
    sys.exit(run_stage(main))
