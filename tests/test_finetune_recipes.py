"""Our copies of torchtune 0.6.1's two LoRA recipes (koblla/finetune/tune_recipes/): they differ from upstream only
in lines marked `# KoBLLa:`, import cleanly, and each change does its job in a real CPU run of the stage: the
published merged model is exactly base + adapter, and a kill -9 followed by a rerun ends bit for bit where an
uninterrupted run ends, with the epoch capped by max_steps_per_epoch and without a cap."""
from __future__ import annotations

import difflib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from finetune_helpers import REPO, assert_merged_is_base_plus_adapter, write_kowiki, write_params

from koblla.finetune.dvclive_logger import read_steps

RECIPES = ["lora_finetune_single_device", "lora_finetune_distributed"]


def _upstream(name: str) -> Path:
    spec = importlib.util.find_spec("recipes")  # torchtune's own recipes package (site-packages/recipes)
    return Path(spec.submodule_search_locations[0]) / f"{name}.py"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_changes_from_upstream_are_marked(name):
    ours = (REPO / "koblla" / "finetune" / "tune_recipes" / f"{name}.py").read_text().splitlines()
    theirs = _upstream(name).read_text().splitlines()
    added = [line for line in difflib.ndiff(theirs, ours) if line.startswith("+ ")]
    assert added, "the copy carries no change"
    header, changes = [a for a in added if a.startswith("+ #")], [a for a in added if not a.startswith("+ #")]
    assert any("tune cp " + name in h for h in header)
    assert all("# KoBLLa:" in c for c in changes), f"unmarked changes: {[c for c in changes if 'KoBLLa' not in c]}"
    # one line replaced per fix, nothing else removed
    removed = [line for line in difflib.ndiff(theirs, ours) if line.startswith("- ")]
    assert len(removed) == (2 if "single" in name else 0)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_copy_imports(name):
    """`tune run FILE` executes the file as __main__: it must import with torchtune 0.6.1 and expose recipe_main."""
    code = (f"import importlib.util as u; "
            f"s = u.spec_from_file_location('r', {str(REPO / 'koblla/finetune/tune_recipes')!r} + '/{name}.py'); "
            f"m = u.module_from_spec(s); s.loader.exec_module(m); print(callable(m.recipe_main))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr[-3000:]


# ---- real runs ------------------------------------------------------------------------------------------------
def _stage_cmd(tmp: Path, model_dir: Path, data_dir: Path, params: Path) -> list[str]:
    return [sys.executable, "-m", "stages.finetune_base", "--params", str(params), "--model-dir", str(model_dir),
            "--data-dir", str(data_dir), "--out", str(tmp / "out"), "--adapter-out", str(tmp / "adapter"),
            "--metrics", str(tmp / "metrics.json"), "--live-dir", str(tmp / "live"), "--scratch", str(tmp / "scratch")]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _run(tmp, model_dir, data_dir, params):
    r = subprocess.run(_stage_cmd(tmp, model_dir, data_dir, params), cwd=REPO, env=ENV, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, f"finetune_base failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return r


def _kill_after_first_checkpoint(tmp, model_dir, data_dir, params) -> None:
    proc = subprocess.Popen(_stage_cmd(tmp, model_dir, data_dir, params), cwd=REPO, env=ENV,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, seen = time.time() + 600, False
    while time.time() < deadline and proc.poll() is None:
        if list((tmp / "scratch").glob("finetune_base/*/epoch_0/adapter_model.pt")) and \
                list((tmp / "scratch").glob("finetune_base/*/recipe_state/recipe_state.pt")):
            seen = True
            break
        time.sleep(0.05)
    assert seen, "no epoch checkpoint appeared before the run ended"
    time.sleep(0.3)  # let torch.save finish; the second epoch takes longer than this
    os.killpg(proc.pid, signal.SIGKILL)  # the stage and its tune child, like a lost machine
    proc.wait()
    assert not (tmp / "out").exists(), "nothing is published before training finishes"


def _kill_mid_publish(out: Path) -> None:
    """kill -9 a process inside koblla.atomic.atomic_dir(out), as a stage killed while publishing would be."""
    code = ("import sys, time; from koblla.atomic import atomic_dir\n"
            "with atomic_dir(sys.argv[1]) as d:\n"
            "    (d / 'model-00001-of-00001.safetensors').write_bytes(b'x' * 4096); print('in', flush=True)\n"
            "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "in"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in out.parent.glob(f".out.{proc.pid}.*.tmp")], "the kill left a temp folder"


def _tensors(path: Path) -> dict:
    from safetensors import safe_open

    out = {}
    for f in sorted(p for p in path.glob("*.safetensors") if not p.name.startswith("adapter_")):
        with safe_open(str(f), framework="pt") as h:
            out.update({k: h.get_tensor(k) for k in h.keys()})
    return out


def _optimizer_state(run: Path) -> dict:
    import torch

    (state,) = run.glob("scratch/finetune_base/*/recipe_state/recipe_state.pt")
    return torch.load(state, weights_only=True, map_location="cpu")


def _assert_same(a, b, where=""):
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _recipe_merge_is_base_plus_adapter(run: Path, base: Path, epochs: int) -> None:
    """torchtune's own epoch_N merged weights (training dtype, fp32) equal base + that epoch's adapter: the live model
    was not merged into in place (upstream 0.6.1 on CPU adds every epoch's update into the frozen base)."""
    import torch

    (work,) = run.glob("scratch/finetune_base/*/")
    base_sd = {k: v.float() for k, v in _tensors(base).items()}
    for n in range(epochs):
        d = work / f"epoch_{n}"
        cfg = json.loads((d / "adapter_config.json").read_text())
        ad, merged = _tensors_named(d / "adapter_model.safetensors"), _tensors(d)
        for k, w in merged.items():
            a = ad.get(f"base_model.model.{k[:-7]}.lora_A.weight")
            if a is None:
                assert torch.equal(w, base_sd[k]), f"epoch_{n}: {k} changed"
                continue
            b = ad[f"base_model.model.{k[:-7]}.lora_B.weight"]
            assert torch.equal(w, base_sd[k] + (cfg["lora_alpha"] / cfg["r"] * b) @ a), f"epoch_{n}: {k}"


def _tensors_named(f: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(f), framework="pt") as h:
        return {k: h.get_tensor(k) for k in h.keys()}


def _leftovers(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.name.endswith(".tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("capped", [True, False], ids=["capped", "uncapped"])
def test_kill_and_resume_equals_uninterrupted(tiny_checkpoints, tmp_path, capped):
    base, _ = tiny_checkpoints
    # capped: 3 epochs of 2 steps out of ~15; uncapped: a small corpus whose whole epoch is a few steps
    data = write_kowiki(tmp_path / "kowiki", n_train=60 if capped else 16)
    params = write_params(tmp_path / "params.yaml", base={
        "epochs": 3, "max_steps_per_epoch": 2 if capped else None, "eval_max_tokens": 0, "keep_scratch": True,
        "warmup_steps": 2, "lora_mlp": False})
    ref, resumed = tmp_path / "ref", tmp_path / "resumed"
    _run(ref, base, data, params)
    _kill_after_first_checkpoint(resumed, base, data, params)
    _kill_mid_publish(resumed / "out")  # what a kill during the (16 GB) publish leaves: .out.<pid>.*.tmp
    r = _run(resumed, base, data, params)
    assert "resuming from" in r.stderr
    assert "left by a killed run" in r.stderr  # the stage removed it when it started

    m_ref, m_res = (json.loads((d / "metrics.json").read_text()) for d in (ref, resumed))
    assert 1 <= m_res["resumed_after_epochs"] < 3 and m_ref["resumed_after_epochs"] == 0
    steps = m_ref["steps"]
    assert m_res["steps"] == steps and (steps == 6 if capped else steps > 3)
    for curve in ("lr", "loss", "grad_norm"):
        a, b = ((d / "live" / "plots" / "metrics" / f"{curve}.tsv").read_text() for d in (ref, resumed))
        assert a == b, f"{curve} curve differs after the resume"
        assert len(a.splitlines()) == steps + 1
    lr_rows = (ref / "live" / "plots" / "metrics" / "lr.tsv").read_text().splitlines()[1:]
    assert len({row.split("\t")[1] for row in lr_rows}) > 3, "warmup + cosine: the lr moves every step"
    # tokens_seen is a count: the recipe's per-step token counts (whole numbers, at most batch x seq), summed
    recs = read_steps(ref / "live.timings")  # wall-time records live beside the DVC output
    assert all(r["tokens"] == int(r["tokens"]) and 0 < r["tokens"] <= 2 * 256 for r in recs)
    assert m_ref["tokens_seen"] == m_res["tokens_seen"] == sum(int(r["tokens"]) for r in recs)
    ad_ref = _tensors_named(ref / "adapter" / "adapter_model.safetensors")
    assert ad_ref and not any("lora" not in k for k in ad_ref)
    _assert_same(ad_ref, _tensors_named(resumed / "adapter" / "adapter_model.safetensors"), "adapter")
    _assert_same(_tensors(ref / "out"), _tensors(resumed / "out"), "merged")
    # optimizer state (AdamW moments and step count) of the last resumable checkpoint, written after the resume
    opt_ref, opt_res = _optimizer_state(ref), _optimizer_state(resumed)
    _assert_same(opt_ref["optimizer"], opt_res["optimizer"], "optimizer")
    assert opt_ref["epochs_run"] == opt_res["epochs_run"] == 2
    step_counts = {float(s["step"]) for s in opt_ref["optimizer"]["state"].values()}
    assert step_counts == {2 * steps / 3}, step_counts

    assert_merged_is_base_plus_adapter(ref / "out", base, ref / "adapter")  # after 3 epochs
    _recipe_merge_is_base_plus_adapter(ref, base, 3)
    assert _leftovers(ref) == [] and _leftovers(resumed) == []
