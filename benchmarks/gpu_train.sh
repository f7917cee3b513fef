#!/usr/bin/env bash
# GPU benchmark of finetune_base's training loop in the setting docs/finetune.md recommends for one GPU ("Real runs",
# 1 GPU): LoRA rank 64 / alpha 128 on q, k, v, o + MLP, dropout 0, seq 2048 packed, batch 2, gradient accumulation
# 16 (65,536 tokens per optimizer step), bf16, torch.compile and activation checkpointing on. A Llama-3-8B-shaped
# random checkpoint is made on the spot (no download). 8 optimizer steps (128 micro-batches); tokens/s is counted
# over steps 4-8. One call, under 8 minutes on one H100/A100-80GB.
#
#   bash benchmarks/gpu_train.sh                       # from the repo root, on a machine with one CUDA GPU
#   PYTHON=/opt/venv/bin/python STEPS=8 GRAD_ACCUM=16 bash benchmarks/gpu_train.sh
#   SMOKE=1 bash benchmarks/gpu_train.sh               # CPU dry run of the script's logic: tiny shape, 3 steps
#
# Needs: a Python with CUDA torch 2.13, torchtune 0.6.1, torchao 0.15, dvclive, pydantic, psutil, safetensors
# (requirements.txt with the CUDA torch wheel); the koblla package importable (the script adds the repo to
# PYTHONPATH); ~40 GB free disk under $OUT for the 16 GB checkpoint. No network.
# It runs the same config (configs/finetune_base.yaml), filled by the same code (koblla.finetune.tune_config), the
# same recipe copy (koblla/finetune/tune_recipes/) and the same DVCLive logger as the stage, with
# save_adapter_weights_only=True so the 16 GB merged save at the end (not part of the training-speed figure) does
# not eat the time budget. Printed beside it, for scale only: torchtune's published figure for a lighter setting
# (Llama 3.1 8B, LoRA rank 8 on q, v, o + MLP, batch 2, packed 2048, compile, no accumulation: 4,699 tokens/s,
# 30.3 GiB on one A6000, torchtune 0.6.1 README).
# Last line of output: one JSON object (tokens_per_second, peak memory, the setting, the reference figure).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-$REPO/.bench/gpu_train}
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then OUT=${OUT:-$REPO/.bench/gpu_train_smoke}; STEPS=${STEPS:-3}; SEQ=${SEQ:-256}; COMPILE=false; GRAD_ACCUM=${GRAD_ACCUM:-1}; fi
STEPS=${STEPS:-8}
GRAD_ACCUM=${GRAD_ACCUM:-16}
SEQ=${SEQ:-2048}
BATCH=${BATCH:-2}
COMPILE=${COMPILE:-true}
TIME_LIMIT=${TIME_LIMIT:-420}   # seconds for the training run itself; the whole script stays under 8 min
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
T0=$(date +%s)

# ---- 1. environment: CUDA GPU, packages, disk -------------------------------------------------------------------
"$PYTHON" - "$SMOKE" <<'EOF'
import shutil, sys
try:
    import torch, torchtune, dvclive  # noqa: F401
except ImportError as e:
    sys.exit(f"gpu_train.sh: {e}; set PYTHON to an interpreter with requirements.txt installed (CUDA torch)")
if not torch.cuda.is_available() and sys.argv[1] != "1":
    sys.exit("gpu_train.sh: no CUDA GPU visible (torch.cuda.is_available() is False)")
print(f"gpu: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (SMOKE=1)'}, torch {torch.__version__}, torchtune {torchtune.__version__}",
      file=sys.stderr)
EOF
FREE_GB=$(df -Pk "$OUT" | awk 'NR==2 {print int($4/1048576)}')
if [ "$SMOKE" != 1 ] && [ "$FREE_GB" -lt 20 ] && [ ! -f "$OUT/Meta-Llama-3-8B-random/model.safetensors.index.json" ]; then
  echo "gpu_train.sh: only ${FREE_GB} GB free under $OUT; the random 8B checkpoint needs 16 GB" >&2; exit 1
fi

# ---- 2. a Llama-3-8B-shaped random checkpoint (HF layout + tune-download extras) and Korean-ish text ------------
"$PYTHON" - "$OUT" "$SMOKE" <<'EOF'
import base64, csv, json, random, sys, time
from pathlib import Path
import torch
from safetensors.torch import save_file
from koblla.finetune.checkpoint import LLAMA3_8B, hf_tensor_shapes, shard_name

out, smoke = Path(sys.argv[1]), sys.argv[2] == "1"
ckpt = out / "Meta-Llama-3-8B-random"
if not (ckpt / "model.safetensors.index.json").is_file():
    t = time.time()
    (ckpt / "original").mkdir(parents=True, exist_ok=True)
    # Meta-Llama-3-8B's shape (8.03 B parameters); SMOKE: the tiny test shape.
    shape = (dict(vocab_size=128256, embed_dim=64, intermediate_dim=224, num_layers=2, num_heads=4, num_kv_heads=2)
             if smoke else LLAMA3_8B)
    V, H, I, L, NH, KV = (shape[k] for k in ("vocab_size", "embed_dim", "intermediate_dim", "num_layers",
                                             "num_heads", "num_kv_heads"))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    shapes = hf_tensor_shapes(**shape)                          # HF Llama tensor names -> shapes (untied lm_head)
    plan, size, limit = [[]], 0, 5 * 2**30                      # ~5 GB shards, like Meta's 4 files
    for k, s in shapes.items():
        n = 2 * (s[0] * (s[1] if len(s) > 1 else 1))
        if size + n > limit and plan[-1]:
            plan.append([]); size = 0
        plan[-1].append(k); size += n
    g = torch.Generator(device=dev).manual_seed(0)
    wmap, total = {}, 0
    for j, keys in enumerate(plan):                             # one shard in host memory at a time
        name = shard_name(j + 1, len(plan))
        sd = {}
        for k in keys:
            s = shapes[k]
            w = (torch.ones(s, dtype=torch.bfloat16) if k.endswith("norm.weight") else
                 (torch.randn(s, device=dev, generator=g) * 0.02).to(torch.bfloat16).cpu())
            sd[k] = w; wmap[k] = name; total += w.numel() * 2
        save_file(sd, str(ckpt / name), metadata={"format": "pt"})
        del sd
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": wmap}))
    (ckpt / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": H,
        "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": KV,
        "max_position_embeddings": 8192, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "hidden_act": "silu",
        "bos_token_id": 128000, "eos_token_id": 128001, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}))
    (ckpt / "generation_config.json").write_text(json.dumps({"bos_token_id": 128000, "eos_token_id": 128001}))
    (ckpt / "original_repo_id.json").write_text(json.dumps({"repo_id": "random/Meta-Llama-3-8B-shaped"}))
    (ckpt / "original" / "params.json").write_text(json.dumps({"dim": H, "n_layers": L, "n_heads": NH,
        "n_kv_heads": KV, "vocab_size": V, "ffn_dim_multiplier": 1.3, "multiple_of": 1024, "norm_eps": 1e-5,
        "rope_theta": 500000.0}))
    # The matching tokenizer: tiktoken format; byte-level ranks (Llama 3's specials sit at 128000+ as in Meta's).
    # Token ids, not their meaning, set the speed: every pack is 2048 ids whatever the merges.
    (ckpt / "original" / "tokenizer.model").write_text(
        "".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256)))
    print(f"checkpoint: {total / 2**30:.1f} GiB in {len(plan)} shards, {time.time() - t:.0f} s", file=sys.stderr)
data = out / "kowiki"; data.mkdir(exist_ok=True)
rng = random.Random(0)
syllables = [chr(0xAC00 + i) for i in range(0, 11172, 7)]
with open(data / "train.csv", "w", newline="", encoding="utf-8") as f:      # ~1.5 M byte-tokens: >> 20 steps
    w = csv.writer(f); w.writerow(["id", "revid", "url", "title", "text"])
    for i in range(30 if smoke else 500):
        words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(rng.randint(100, 400))]
        w.writerow([i, i, f"https://ko.wikipedia.org/wiki?curid={i}", f"문서{i}", " ".join(words) + "."])
EOF

# ---- 3. LoRA steps with our single-device recipe copy, through the stage's own command builder ------------------
"$PYTHON" - "$OUT" "$STEPS" "$SEQ" "$BATCH" "$COMPILE" "$TIME_LIMIT" "$T0" "$SMOKE" "$GRAD_ACCUM" <<'EOF'
import json, shutil, statistics, subprocess, sys, time
from pathlib import Path
import torch
from koblla.finetune import checks, tune_command, tune_config
from koblla.finetune.dvclive_logger import read_steps
from koblla.params import read_params_file, validate_section

out, steps, seq, batch, comp, limit, t0 = (Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                           sys.argv[5] == "true", int(sys.argv[6]), int(sys.argv[7]))
smoke, accum = sys.argv[8] == "1", int(sys.argv[9])
ckpt, data, work = out / "Meta-Llama-3-8B-random", out / "kowiki", out / "run"
shutil.rmtree(work, ignore_errors=True)
# docs/finetune.md's recommended 1-GPU finetune_base setting ("Real runs", 1 GPU), capped at `steps` steps.
SETTING = dict(lora_rank=64, lora_alpha=128, lora_dropout=0.0,
               lora_attn_modules=["q_proj", "k_proj", "v_proj", "output_proj"], lora_mlp=True, lora_output=False,
               lr=2e-4, warmup_steps=100, packed=True)
p = validate_section("finetune_base", {  # params.yaml's section (the one home of every value), changed as above
    **read_params_file("params.yaml")["finetune_base"], "device": "cpu" if smoke else "cuda",
    "dtype": "fp32" if smoke else "bf16", "max_seq_len": seq, "batch_size": batch, "gradient_accumulation_steps": accum,
    "epochs": 1, "max_steps_per_epoch": steps, "compile": comp, "activation_checkpointing": not smoke,
    "eval_max_tokens": 0, "tune_overrides": {"save_adapter_weights_only": True}, "nproc_per_node": 1, "nnodes": 1,
    "node_rank": 0, **SETTING})
checks.check_model(ckpt, p, "gpu_train.sh checkpoint")
checks.check_text_csv(data / "train.csv", p)
structure = Path("configs/finetune_base.yaml")                 # the stage's finished config, run in `work`
cfg = tune_config.stage_config(structure, tune_config.base_values(p, ckpt, data, seed=0), p.tune_overrides,
                               "finetune_base")
run_config = tune_config.write_config(work / "run_config.yaml", tune_config.config_text(
    tune_config.finished_config(cfg, work, False, structure), "# benchmarks/gpu_train.sh\n"))
cmd = tune_command.build_command(p, "finetune_base", run_config)
print("running:", " ".join(cmd), file=sys.stderr)
t = time.time()
rc = subprocess.run(["timeout", str(limit), *cmd]).returncode
wall = time.time() - t
recs = read_steps(work / "dvclive")
if rc != 0 and not recs:
    sys.exit(f"gpu_train.sh: torchtune exited with {rc} before logging a step")
warm = [r for r in recs if r["step"] > (1 if smoke else 3)]     # first steps carry compile / warm-up
tps = sum(r["tokens"] for r in warm) / sum(r["seconds"] for r in warm) if warm else float("nan")
peak = {k: round(max(r[k] for r in recs if k in r), 2)
        for k in ("peak_memory_active", "peak_memory_alloc", "peak_memory_reserved") if any(k in r for r in recs)}
ref_tps, ref_mem = 4699.0, 30.3
res = {
    "benchmark": "gpu_train", "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (SMOKE)", "model": "Llama-3-8B-shaped random, bf16",
    "setting": "docs/finetune.md Real runs, 1 GPU", "lora": {k: v for k, v in SETTING.items() if k.startswith("lora")},
    "steps_logged": len(recs), "seq_len": seq, "batch_size": batch, "gradient_accumulation_steps": accum,
    "tokens_per_optimizer_step": seq * batch * accum, "packed": True, "compile": comp,
    "activation_checkpointing": not smoke, "tokens_per_second": round(tps, 1),
    "tokens_per_second_median_step": round(statistics.median(r["tokens_per_second"] for r in warm), 1) if warm else None,
    "peak_memory_gib": peak, "train_wall_seconds": round(wall, 1), "script_seconds": round(time.time() - t0, 1),
    "tune_exit_code": rc,
    "reference": {"tokens_per_second": ref_tps, "peak_memory_gib": ref_mem, "hardware": "1x A6000",
                  "model": "Llama 3.1 8B LoRA rank 8 (q, v, o + MLP), batch 2, packed 2048, compile, no accumulation",
                  "source": "torchtune 0.6.1 README, Memory and training speed", "same_setting": False},
    "tokens_per_second_vs_reference": round(tps / ref_tps, 2) if warm else None,
}
print(json.dumps(res))
EOF
