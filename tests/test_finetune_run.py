"""Real torchtune LoRA runs on CPU with the tiny Llama 3 checkpoints: both stages end to end (outputs load in
transformers, the adapter is PEFT-shaped, the merged model is exactly base + adapter, curves and metrics exist).
Kill -9 and resume: tests/test_finetune_recipes.py."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from finetune_helpers import REPO, assert_merged_is_base_plus_adapter, write_kowiki, write_lima_ko, write_params
from safetensors import safe_open

pytestmark = pytest.mark.slow

HF_FILES = ["config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "original/tokenizer.model", "original/params.json",
            "torchtune_config.yaml"]


def _stage(stage: str, tmp: Path, model_dir: Path, data_dir: Path, params: Path, **popen):
    cmd = [sys.executable, "-m", f"stages.{stage}", "--params", str(params), "--model-dir", str(model_dir),
           "--data-dir", str(data_dir), "--out", str(tmp / "out"), "--adapter-out", str(tmp / "adapter"),
           "--metrics", str(tmp / "metrics.json"), "--live-dir", str(tmp / "live"), "--scratch", str(tmp / "scratch")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return cmd, env


def run_stage(stage, tmp, model_dir, data_dir, params) -> subprocess.CompletedProcess:
    cmd, env = _stage(stage, tmp, model_dir, data_dir, params)
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{stage} failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return r


def check_outputs(tmp: Path, init_dir: Path, steps: int) -> dict:
    out, adapter, live = tmp / "out", tmp / "adapter", tmp / "live"
    for f in HF_FILES:
        assert (out / f).is_file(), f"merged model lacks {f}"
    assert not list(out.glob("adapter_*")), "adapter files beside merged weights get applied twice by transformers"
    shards = sorted(out.glob("model-*.safetensors"))
    assert shards
    with safe_open(str(shards[0]), framework="pt") as f:
        assert all(str(f.get_tensor(k).dtype) == "torch.bfloat16" for k in f.keys())  # save_dtype: bf16
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    init = AutoModelForCausalLM.from_pretrained(str(init_dir), dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[128000, 300, 301]])).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()
    sd, sd0 = model.state_dict(), init.state_dict()
    assert not torch.equal(sd["model.layers.0.self_attn.q_proj.weight"], sd0["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(sd["model.embed_tokens.weight"], sd0["model.embed_tokens.weight"])  # LoRA leaves it alone

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8 and "q_proj" in cfg["target_modules"]
    assert cfg["base_model_name_or_path"] == str(init_dir)  # absolute: the init checkpoint is outside the repo
    assert_merged_is_base_plus_adapter(out, init_dir, adapter)
    with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys

    # Deterministic curves in the DVC output; wall-time ones beside it (<live>.timings/, not an output), so a rerun
    # leaves dvc.lock unchanged.
    timings = live.with_name(f"{live.name}.timings")
    for name, folder in (("loss", live / "plots" / "metrics"), ("lr", live / "plots" / "metrics"),
                         ("grad_norm", live / "plots" / "metrics"), ("tokens_per_second", timings)):
        rows = (folder / f"{name}.tsv").read_text().splitlines()
        assert rows[0] == f"step\t{name}" and [int(r.split("\t")[0]) for r in rows[1:]] == list(range(1, steps + 1))
    assert {p.name for p in live.rglob("*") if p.is_file()} == {"loss.tsv", "lr.tsv", "grad_norm.tsv", "metrics.json",
                                                                 "loss.png"}
    assert "tokens_per_second" not in json.loads((live / "metrics.json").read_text())
    assert (timings / "steps.jsonl").is_file()
    assert (live / "loss.png").stat().st_size > 1000

    m = json.loads((tmp / "metrics.json").read_text())
    assert m["steps"] == steps and m["tokens_seen"] > 0 and "tokens_per_second" not in m
    t = json.loads((tmp / "metrics.timings.json").read_text())  # run-dependent figures: beside, not in, metrics
    assert t["tokens_per_second"] > 0 and t["peak_rss_gib"] > 0
    assert math.isfinite(m["final_loss"])
    assert not any((tmp / "scratch").rglob("epoch_*")), "scratch is cleaned after publishing"
    return m


def test_finetune_base_runs(tiny_checkpoints, tmp_path):
    base, _ = tiny_checkpoints
    data = write_kowiki(tmp_path / "kowiki")
    params = write_params(tmp_path / "params.yaml", base={"max_steps_per_epoch": 3})  # 2 x 3 steps: cheap
    r = run_stage("finetune_base", tmp_path, base, data, params)
    assert "finetune_base: 6 steps" in r.stdout
    m = check_outputs(tmp_path, base, steps=6)
    for k in ("heldout_loss_ko", "heldout_loss_en", "init_heldout_loss_ko", "init_heldout_loss_en"):
        assert math.isfinite(m[k]), k
    assert m["heldout_tokens_ko"] > 0 and m["heldout_tokens_en"] > 0
    saved = (tmp_path / "out" / "torchtune_config.yaml").read_text()
    assert "tune run koblla/finetune/tune_recipes/lora_finetune_single_device.py --config <this file>" in saved
    body = saved.split("\n", 2)[2]  # below the two header lines: finished, the config of a fresh run
    assert "???" not in body and f"output_dir: {tmp_path / 'scratch' / 'finetune_base'}\n" in body
    assert "lora_rank: 8" in saved and "packed: true" in saved


def test_finetune_instruct_runs(tiny_checkpoints, tmp_path):
    _, instruct = tiny_checkpoints
    data = write_lima_ko(tmp_path / "lima_ko")
    prompt = "한국어로 답하세요. 규칙: 1+1=2"  # `=` and `: ` travel in the config file, unquoted by us
    params = write_params(tmp_path / "params.yaml",
                          instruct={"system_prompt": prompt, "epochs": 1, "max_steps_per_epoch": 3})
    r = run_stage("finetune_instruct", tmp_path, instruct, data, params)
    assert "finetune_instruct: 3 steps" in r.stdout
    m = check_outputs(tmp_path, instruct, steps=3)  # merged == base + adapter after 1 epoch
    saved = yaml.safe_load((tmp_path / "out" / "torchtune_config.yaml").read_text())
    assert saved["dataset"]["new_system_prompt"] == prompt
    assert m["chat_records"] == {"kolima": 8, "bilima_en_ko": 8, "bilima_ko_en": 8, "lima_en": 8}
    # the chat template came along (tokenizer_config.json of the instruct checkpoint)
    assert "chat_template" in json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
