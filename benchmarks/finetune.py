"""Benchmark finetune_base on CPU with the tiny Llama 3: packing efficiency and training tokens/s.

python benchmarks/finetune.py

Run from the repo root with no arguments (about 3-5 minutes on 2 cores, more the first time: it builds the tiny
checkpoints). Everything goes under .bench/finetune/ (gitignored):
- inputs: the tiny base checkpoint (koblla.tiny, the same builder as the make_tiny_models stage) and a kowiki-style
  train.csv made from real Korean Wikipedia text (../shared/data/kowiki_wikiextractor_text, the first 400
  articles) when ../shared is present, else from assets/tiny/korean.txt paragraphs;
- packing: the stage's dataset (koblla.finetune.data.packed_text_dataset: whole documents cut into max_seq_len
  pieces, packed) vs. two references: torchtune's own text_completion_dataset packed (it truncates each document
  to max_seq_len first) and unpacked (one truncated document per row, padded to the longest in a batch of 4).
  packing_efficiency = real tokens / token slots (target for CPT: >= 0.99); corpus_share_trained = real tokens
  / tokens of the whole corpus;
- speed: the stage's run (python -m stages.finetune_base's library call: DVCLive logger, our overrides) vs. the
  reference, a plain `tune run lora_finetune_single_device` of the same config with torchtune's stock DiskLogger,
  10 optimizer steps of 4 x 256 packed tokens each; tokens/s is the median over steps 2..10 of the recipe's own
  tokens_per_second_per_gpu (step 1 carries warm-up). Timings are wall-clock on a shared machine: noisy.
The last line of output is one JSON object with the figures.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_TEXT = REPO.parent / "shared" / "data" / "kowiki_wikiextractor_text" / "AA"
BENCH = REPO / ".bench" / "finetune"
SEQ, BATCH, STEPS = 256, 4, 10
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(REPO))


def params(section: str, **updates):
    """params.yaml's `section` (the one home of every value) with `updates` over it, validated."""
    from koblla.params import read_params_file, validate_section

    path = REPO / "params.yaml"
    return validate_section(section, {**read_params_file(path)[section], **updates}, path)


def log(msg: str) -> None:
    print(f"[bench finetune] {msg}", file=sys.stderr, flush=True)


def tiny_base() -> Path:
    base, instruct = BENCH / "models" / "Meta-Llama-3-8B", BENCH / "models" / "Meta-Llama-3-8B-Instruct"
    if not (base / "model.safetensors.index.json").is_file():
        from koblla.tiny import make_tiny_checkpoints

        log("building the tiny checkpoints (once)")
        make_tiny_checkpoints(base, instruct, params("tiny_models"), seed=42)
    return base


def corpus() -> tuple[list[str], str]:
    if SHARED_TEXT.is_dir():
        docs = []
        for shard in sorted(SHARED_TEXT.glob("wiki_*")):
            for m in re.finditer(r"<doc [^>]*>\n(.*?)</doc>", shard.read_text(encoding="utf-8"), re.S):
                body = m.group(1).split("\n", 1)[-1].strip()  # the first line repeats the title
                if len(body) >= 100:
                    docs.append(body)
            if len(docs) >= 400:
                break
        return docs[:400], "shared/data/kowiki_wikiextractor_text (400 real kowiki articles)"
    text = (REPO / "assets" / "tiny" / "korean.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()], "assets/tiny/korean.txt paragraphs"


def write_csv(docs: list[str], data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", docs), ("dev", docs[:5])):
        with open(data_dir / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "revid", "url", "title", "text"])
            for i, t in enumerate(rows):
                w.writerow([i, i, f"https://ko.wikipedia.org/wiki?curid={i}", f"문서{i}", t])
    return data_dir


def packing(base: Path, data_dir: Path, seq: int) -> dict:
    """Real-token share of the token slots, and the share of the corpus' tokens trained on, for
    - ours: koblla.finetune.data.packed_text_dataset (what the stage trains on),
    - torchtune's text_completion_dataset packed (each document truncated to max_seq_len first),
    - unpacked: one truncated document per row, padded to the longest in a batch of 4."""
    import random

    from torchtune.datasets import text_completion_dataset
    from torchtune.models.llama3 import llama3_tokenizer

    from koblla.finetune.data import packed_text_dataset

    tok = llama3_tokenizer(str(base / "original" / "tokenizer.model"), max_seq_len=seq)
    kw = dict(source="csv", data_files=str(data_dir / "train.csv"), column="text", split="train", na_filter=False)

    def real_tokens(ds) -> int:
        return sum(int((ds[i]["labels"] != -100).sum()) for i in range(len(ds)))

    ours = packed_text_dataset(tok, **kw)
    stock = text_completion_dataset(tok, packed=True, **kw)
    plain = text_completion_dataset(tok, packed=False, **kw)
    corpus = sum(len(tok.encode(r["text"], add_bos=True, add_eos=True)) for r in plain._data)
    lens = [len(plain[i]["tokens"]) for i in range(len(plain))]
    random.Random(0).shuffle(lens)
    batches = [lens[i:i + BATCH] for i in range(0, len(lens) - BATCH + 1, BATCH)]
    r_ours, r_stock = real_tokens(ours), real_tokens(stock)
    return {
        "corpus_tokens": corpus,
        "ours": {"packs": len(ours), "packing_efficiency": round(r_ours / (len(ours) * seq), 5),
                 "corpus_share_trained": round(r_ours / corpus, 5)},
        "torchtune_text_completion_packed": {"packs": len(stock),
                                             "packing_efficiency": round(r_stock / (len(stock) * seq), 5),
                                             "corpus_share_trained": round(r_stock / corpus, 5)},
        "unpacked_padded": {"padding_efficiency": round(sum(map(sum, batches))
                                                        / sum(BATCH * max(b) for b in batches), 5),
                            "corpus_share_trained": round(sum(lens) / corpus, 5)},
    }


def step_tps(values: list[float]) -> float:
    return round(statistics.median(values[1:] or values), 1)


def run_stage(base: Path, data_dir: Path) -> dict:
    from koblla.finetune.base import run_finetune_base
    from koblla.finetune.dvclive_logger import read_steps
    p = params("finetune_base", max_seq_len=SEQ, batch_size=BATCH, epochs=1, max_steps_per_epoch=STEPS,
               eval_max_tokens=0, keep_scratch=True)
    out = BENCH / "stage"
    t = time.time()
    m = run_finetune_base(p, seed=42, model_dir=base, data_dir=data_dir, out=out / "model",
                          adapter_out=out / "adapter", metrics_path=out / "metrics.json", live_dir=out / "dvclive",
                          config=REPO / "configs" / "finetune_base.yaml", scratch_root=out / "scratch")
    recs = read_steps(out / "dvclive.timings")  # the per-step wall-time records (beside the DVC output)
    return {"wall_seconds": round(time.time() - t, 1),
            "tokens_per_second": step_tps([r["tokens_per_second"] for r in recs]),
            "stage_metric_tokens_per_second": m["tokens_per_second"], "steps": m["steps"]}


def run_plain_tune(base: Path, data_dir: Path) -> dict:
    """The reference: torchtune's recipe and stock DiskLogger on the same config, no KoBLLa code in the loop."""
    from koblla.finetune import tune_command, tune_config
    work = BENCH / "plain"
    # torchtune's stock DiskLogger (it takes, and ignores, our logger's extra keys)
    p = params("finetune_base", max_seq_len=SEQ, batch_size=BATCH, epochs=1, max_steps_per_epoch=STEPS, tune_overrides={
        "metric_logger._component_": "torchtune.training.metric_logging.DiskLogger",
        "metric_logger.log_dir": f"{work}/logs"})
    structure = REPO / "configs" / "finetune_base.yaml"
    cfg = tune_config.stage_config(structure, tune_config.base_values(p, base, data_dir, seed=42), p.tune_overrides,
                                   "finetune_base")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    run_config = tune_config.write_config(work / "run_config.yaml", tune_config.config_text(
        tune_config.finished_config(cfg, work, False, structure), ""))
    t = time.time()
    subprocess.run(tune_command.build_command(p, "bench", run_config), cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = "\n".join(f.read_text() for f in (work / "logs").glob("*.txt"))
    tps = [float(x) for x in re.findall(r"tokens_per_second_per_gpu:([0-9.]+)", text)]
    return {"wall_seconds": round(time.time() - t, 1), "tokens_per_second": step_tps(tps), "steps": len(tps)}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    BENCH.mkdir(parents=True, exist_ok=True)
    base = tiny_base()
    docs, source = corpus()
    data = write_csv(docs, BENCH / "kowiki")
    log(f"corpus: {len(docs)} documents from {source}")
    pack = {str(s): packing(base, data, s) for s in (256, 2048)}
    log(f"packing: {json.dumps(pack)}")
    stage = run_stage(base, data)
    log(f"stage: {stage}")
    plain = run_plain_tune(base, data)
    log(f"plain tune run: {plain}")
    result = {
        "benchmark": "finetune",
        "model": "tiny Llama 3 (2 layers, dim 64, vocab 128256)",
        "corpus": source,
        "max_seq_len": SEQ, "batch_size": BATCH, "steps": STEPS,
        "packing_efficiency": pack[str(SEQ)]["ours"]["packing_efficiency"],
        "packing_target": 0.99,
        "packing_meets_target": pack[str(SEQ)]["ours"]["packing_efficiency"] >= 0.99,
        "corpus_share_trained": pack[str(SEQ)]["ours"]["corpus_share_trained"],
        "packing_by_seq_len": pack,
        "tokens_per_second": stage["tokens_per_second"],
        "reference_tokens_per_second": plain["tokens_per_second"],
        "reference": "plain `tune run lora_finetune_single_device` with torchtune's DiskLogger, same config",
        "stage": stage, "plain_tune_run": plain,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
