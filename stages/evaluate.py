"""Score one model of the chain with lm-eval and write its sample generations.

python -m stages.evaluate --name koblla_inst --model-dir models/koblla-instruct --kind instruct \
    --metrics metrics/eval/koblla_inst.json --generations reports/generations/koblla_inst.jsonl

Tasks, few-shot, batch size, limit, chat template, device and dtype come from params.yaml `evaluate`. Names ending
in `_local` are the variants in evals/ (our sample files); real runs list lm-eval's built-in names instead
(truthfulqa_mc2, kobest_copa, kmmlu, haerae, ...). DVC runs this once per model (`evaluate@<name>` in dvc.yaml).
Writes metrics/eval/<name>.json ({"task/metric": value, "task/metric_stderr": ..., "task/version": ...}) and
reports/generations/<name>.jsonl (greedy answers to evals/prompts/, register of each Korean answer measured).
"""
import sys

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.params import load_section


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--name", required=True, help="model name used in the outputs (e.g. koblla_inst)")
    p.add_argument("--model-dir", required=True, help="Hugging Face model folder")
    p.add_argument("--kind", choices=["base", "instruct"], required=True,
                   help="instruct: chat template for generations (and for lm-eval if evaluate.apply_chat_template)")
    p.add_argument("--metrics", required=True, help="flat metrics JSON to write")
    p.add_argument("--generations", required=True, help="sample generations JSONL to write")
    p.add_argument("--evals-dir", default=None,
                   help="lm-eval task folder passed as include_path (default: params evaluate.evals_dir)")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    params = load_section("evaluate", a.params)
    seed = load_section("common", a.params).seed

    from koblla.evaluate import run_evaluate

    metrics = run_evaluate(a.name, a.model_dir, a.kind, params, a.evals_dir or params.evals_dir, a.metrics,
                           a.generations, seed=seed, raw_results_dir="scratch/evaluate")
    scores = {k: v for k, v in metrics.items() if not k.endswith(("/version", "/n")) and "stderr" not in k}
    print(f"{a.name}: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items() if not k.startswith("generations/")))
    print(f"{a.name}: {int(metrics['generations/n'])} generations, "
          f"{int(metrics['generations/ko_register_ok'])}/{int(metrics['generations/ko_register_judged'])} "
          f"judged Korean answers in the expected register -> {a.generations}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
