"""Chat SFT with LoRA (torchtune) on the LIMA-ko mix, from the chat-vector model, driven by params.yaml.

python -m stages.finetune_instruct --model-dir models/koblla-chatvec --data-dir data/lima_ko \\
    --out models/koblla-instruct --adapter-out models/koblla-instruct-adapter \\
    --metrics metrics/finetune_instruct.json --live-dir dvclive/finetune_instruct

Runs `tune run koblla/finetune/tune_recipes/lora_finetune_single_device.py --config <finished config>` (or
lora_finetune_distributed under torchrun when nproc_per_node * nnodes > 1): configs/finetune_instruct.yaml with its
??? keys filled from the finetune_instruct section of params.yaml. Data: a weighted mix
(finetune_instruct.datasets) of <data-dir>/{kolima,bilima_en_ko,bilima_ko_en,lima_en}.jsonl (openai-style
`messages`; lima_en = the English LIMA source, unchanged), Llama 3 chat template, loss on assistant tokens only.
A rerun after a crash resumes from the last finished epoch. Publishes the merged HF model, the PEFT adapter,
curves and metrics. Example experiment:
  dvc exp run -S finetune_instruct.datasets.kolima=2.0 -S finetune_instruct.datasets.lima_en=0
"""
import sys
from pathlib import Path

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.params import load_section, read_params_file


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--model-dir", type=Path, required=True, help="init checkpoint: chat_vector's output")
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the LIMA-ko *.jsonl sets (translate)")
    p.add_argument("--out", type=Path, required=True, help="merged HF model")
    p.add_argument("--adapter-out", type=Path, required=True, help="PEFT LoRA adapter")
    p.add_argument("--metrics", type=Path, required=True, help="final metrics JSON")
    p.add_argument("--live-dir", type=Path, required=True, help="DVCLive curves (plots/metrics/*.tsv, loss.png)")
    p.add_argument("--scratch", type=Path, default=Path("scratch"),
                   help="root of the resumable working state (default: scratch -> scratch/finetune_instruct/<hash>/)")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    from koblla.finetune.instruct import run_finetune_instruct

    params = load_section("finetune_instruct", a.params)
    seed = load_section("common", a.params).seed
    meta_instruct = (read_params_file(a.params).get("models") or {}).get("instruct_dir")
    m = run_finetune_instruct(params, seed=seed, model_dir=a.model_dir, data_dir=a.data_dir, out=a.out,
                              adapter_out=a.adapter_out, metrics_path=a.metrics, live_dir=a.live_dir,
                              scratch_root=a.scratch, meta_instruct_dir=Path(meta_instruct) if meta_instruct else None)
    if m:
        print(f"finetune_instruct: {m['steps']} steps, {m['tokens_seen']} tokens, {m['tokens_per_second']} "
              f"tokens/s, final loss {m['final_loss']:.4f} -> {a.out}, {a.adapter_out}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
