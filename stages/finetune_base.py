"""Korean continued pretraining of Llama 3 with LoRA (torchtune), driven by params.yaml's finetune_base section.

python -m stages.finetune_base --model-dir models/meta/Meta-Llama-3-8B --data-dir data/kowiki \\
    --out models/koblla-base --adapter-out models/koblla-base-adapter --metrics metrics/finetune_base.json \\
    --live-dir dvclive/finetune_base

Runs `tune run koblla/finetune/tune_recipes/lora_finetune_single_device.py --config configs/finetune_base.yaml
key=value...` (or `tune run --nproc_per_node N koblla/finetune/tune_recipes/lora_finetune_distributed.py ...` when
nproc_per_node * nnodes > 1) with params.yaml merged in as overrides, text completion over <data-dir>/train.csv
(packed), in scratch/finetune_base/<hash>/.
A rerun after a crash resumes from the last finished epoch. Publishes the merged HF model (--out), the PEFT
adapter (--adapter-out), per-step curves (--live-dir, for `dvc plots show`, plus loss.png) and final metrics
with held-out loss on <data-dir>/dev.csv and an English text. Example experiment:
  dvc exp run -S finetune_base.lora_rank=16 -S finetune_base.lr=1e-4
"""
import sys
from pathlib import Path

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.params import load_section


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--model-dir", type=Path, required=True, help="init checkpoint (tune download layout)")
    p.add_argument("--data-dir", type=Path, required=True, help="folder with train.csv and dev.csv (extract_wiki)")
    p.add_argument("--out", type=Path, required=True, help="merged HF model")
    p.add_argument("--adapter-out", type=Path, required=True, help="PEFT LoRA adapter")
    p.add_argument("--metrics", type=Path, required=True, help="final metrics JSON")
    p.add_argument("--live-dir", type=Path, required=True, help="DVCLive curves (plots/metrics/*.tsv, loss.png)")
    p.add_argument("--scratch", type=Path, default=Path("scratch"),
                   help="root of the resumable working state (default: scratch -> scratch/finetune_base/<hash>/)")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    from koblla.finetune.base import run_finetune_base

    params = load_section("finetune_base", a.params)
    seed = load_section("common", a.params).seed
    m = run_finetune_base(params, seed=seed, model_dir=a.model_dir, data_dir=a.data_dir, out=a.out,
                          adapter_out=a.adapter_out, metrics_path=a.metrics, live_dir=a.live_dir,
                          scratch_root=a.scratch)
    if m:
        print(f"finetune_base: {m['steps']} steps, {m['tokens_seen']} tokens, {m['tokens_per_second']} tokens/s, "
              f"final loss {m['final_loss']:.4f} -> {a.out}, {a.adapter_out}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
