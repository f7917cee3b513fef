"""finetune stages without training: params, the command and finished config (1 GPU, 4 GPUs, 2x8 nodes) as
torchtune reads them, config hash and run key, bad-input checks, the instruct mix, the DVCLive logger and the
metrics summary."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from finetune_helpers import REPO, fake_model_dir, write_kowiki, write_lima_ko
from params_helpers import repo_params, section_params

from koblla.errors import InputError, ParamsError
from koblla.finetune import checks
from koblla.finetune.params import INSTRUCT_SETS, FinetuneBaseParams, FinetuneInstructParams
from koblla.params import validate_section

BASE_CFG = REPO / "configs" / "finetune_base.yaml"
INSTRUCT_CFG = REPO / "configs" / "finetune_instruct.yaml"


# ---- params ----------------------------------------------------------------------------------------------------
def test_repo_params_validate():
    from koblla.params import load_section

    assert isinstance(load_section("finetune_base", REPO / "params.yaml"), FinetuneBaseParams)
    assert isinstance(load_section("finetune_instruct", REPO / "params.yaml"), FinetuneInstructParams)


@pytest.mark.parametrize("section,raw,needle", [
    ("finetune_base", {"nproc_per_node": 2}, "device: cuda"),
    ("finetune_base", {"device": "cuda", "nnodes": 2}, "rdzv_endpoint"),
    ("finetune_base", {"device": "cuda", "nnodes": 2, "rdzv_endpoint": "h:1", "node_rank": 2}, "node_rank"),
    ("finetune_base", {"lora_rank": 8, "typo_key": 1}, "unknown key"),
    ("finetune_instruct", {"datasets": {"kolima": 1.0, "nope": 1.0}}, "unknown set"),
    ("finetune_instruct", {"datasets": {"kolima": 0.0}}, "nothing to train"),
])
def test_bad_params_are_rejected(section, raw, needle):
    with pytest.raises(ParamsError, match=needle):
        validate_section(section, {**repo_params()[section], **raw})


@pytest.mark.parametrize("section", ["finetune_base", "finetune_instruct"])
def test_every_key_comes_from_params_yaml(section):
    """No defaults in the models: a key missing from the section is an error naming it."""
    raw = repo_params()[section]
    for key in ("lr", "max_seq_len", "tune_overrides"):
        with pytest.raises(ParamsError, match=rf"{section}\.{key}: Field required"):
            validate_section(section, {k: v for k, v in raw.items() if k != key})


# ---- command and finished config -------------------------------------------------------------------------------
def _job(tmp_path, stage="finetune_base", **kw):
    from koblla.finetune import base, instruct

    model = fake_model_dir(tmp_path / "model")
    common = dict(seed=1, model_dir=model, out=tmp_path / "out", adapter_out=tmp_path / "adapter",
                  live_dir=tmp_path / "live", scratch_root=tmp_path / "scratch")
    if stage == "finetune_base":
        p = section_params("finetune_base", **{"eval_max_tokens": 0, **kw})
        return base.make_job(p, data_dir=write_kowiki(tmp_path / "kowiki"), config=BASE_CFG, **common)
    p = section_params("finetune_instruct", **kw)
    return instruct.make_job(p, data_dir=write_lima_ko(tmp_path / "lima"), config=INSTRUCT_CFG, **common)


def _plan(tmp_path, stage="finetune_base", **kw):
    from koblla.finetune.runner import plan

    return plan(_job(tmp_path, stage, **kw))


def _torchtune_reads(text: str, tmp_path: Path):
    """The config `tune run --config FILE` hands the recipe, parsed by torchtune's own code."""
    from torchtune.config._parse import TuneRecipeArgumentParser
    from torchtune.config._utils import _merge_yaml_and_cli_args

    path = tmp_path / "read_back.yaml"
    path.write_text(text, encoding="utf-8")
    yaml_args, cli_args = TuneRecipeArgumentParser(description="t").parse_known_args(["--config", str(path)])
    return _merge_yaml_and_cli_args(yaml_args, cli_args)


def test_one_device_uses_single_device_recipe(tmp_path):
    pl = _plan(tmp_path)
    cmd = pl.cmd
    assert Path(cmd[0]).name == "tune" and cmd[1] == "run"
    assert cmd[2:] == ["koblla/finetune/tune_recipes/lora_finetune_single_device.py", "--config",
                       str(pl.work / "run_config.yaml")]  # the finished config, no key=value after it
    cfg = _torchtune_reads(pl.run_config_text, tmp_path)
    assert cfg.device == "cpu" and cfg.dtype == "fp32" and cfg.optimizer.fused is False
    assert cfg.model.num_layers == 2 and cfg.model.embed_dim == 64  # shape from config.json
    assert list(cfg.checkpointer.checkpoint_files) == ["model-00001-of-00002.safetensors",
                                                       "model-00002-of-00002.safetensors"]
    assert cfg.output_dir == str(pl.work) and cfg.checkpointer.output_dir == str(pl.work)


def test_four_gpus_use_torchrun_distributed_recipe(tmp_path):
    pl = _plan(tmp_path, device="cuda", dtype="bf16", nproc_per_node=4, compile=True, activation_checkpointing=True)
    assert pl.cmd[2:] == ["--nproc_per_node", "4", "koblla/finetune/tune_recipes/lora_finetune_distributed.py",
                          "--config", str(pl.work / "run_config.yaml")]
    cfg = _torchtune_reads(pl.run_config_text, tmp_path)
    assert (cfg.device, cfg.dtype, cfg.compile, cfg.enable_activation_checkpointing, cfg.optimizer.fused,
            cfg.log_peak_memory_stats) == ("cuda", "bf16", True, True, True, True)
    one = _plan(tmp_path / "one")
    assert pl.config_text.split("\n", 2)[2] != one.config_text.split("\n", 2)[2]  # device and dtype differ
    assert "tune run --nproc_per_node 4 koblla/finetune/tune_recipes/lora_finetune_distributed.py --config <this " \
           "file>" in pl.config_text


def test_two_nodes_of_eight(tmp_path):
    pl = _plan(tmp_path, device="cuda", dtype="bf16", nproc_per_node=8, nnodes=2, node_rank=1,
               rdzv_endpoint="10.0.0.1:29500")
    cmd = pl.cmd
    i = cmd.index("koblla/finetune/tune_recipes/lora_finetune_distributed.py")
    launcher = cmd[2:i]
    assert launcher == ["--nproc_per_node", "8", "--nnodes", "2", "--node_rank", "1", "--rdzv_backend", "c10d",
                        "--rdzv_endpoint", "10.0.0.1:29500", "--rdzv_id", "koblla-finetune_base"]
    # torchtune's own CLI parser accepts the whole command as a distributed run.
    from torchtune._cli.tune import TuneCLIParser

    args = TuneCLIParser()._parser.parse_args(cmd[1:])
    assert args.nproc_per_node == "8" and args.nnodes == "2" and args.node_rank == 1
    assert args.rdzv_endpoint == "10.0.0.1:29500"
    assert args.recipe == "koblla/finetune/tune_recipes/lora_finetune_distributed.py"
    assert args.recipe_args == ["--config", str(pl.work / "run_config.yaml")]
    # not a built-in: torchtune runs our copy as a module under torchrun (`python -m`), importable from the repo root
    from torchtune._cli.run import Run

    run = Run.__new__(Run)
    assert run._get_recipe(args.recipe) is None
    module = run._convert_to_dotpath(args.recipe)
    assert module == "koblla.finetune.tune_recipes.lora_finetune_distributed"
    assert importlib.util.find_spec(module).origin == str(REPO / args.recipe)
    # every node trains what node 0 publishes: the same config, whatever node_rank says
    node0 = _plan(tmp_path, device="cuda", dtype="bf16", nproc_per_node=8, nnodes=2, node_rank=0,
                  rdzv_endpoint="10.0.0.1:29500")
    body = lambda text: text.split("\n", 2)[2]  # noqa: E731 (the header names each node's rank)
    assert node0.config_hash == pl.config_hash and body(node0.run_config_text) == body(pl.run_config_text)


def test_finished_config_carries_params(tmp_path):
    pl = _plan(tmp_path, lora_rank=32, lora_alpha=64, use_dora=True, lora_attn_modules=["q_proj", "v_proj"],
               max_steps_per_epoch=None, tune_overrides={"optimizer.betas": [0.9, 0.95], "profiler.enabled": True})
    cfg = _torchtune_reads(pl.run_config_text, tmp_path)
    assert cfg.model.lora_rank == 32 and cfg.model.lora_alpha == 64 and cfg.model.use_dora is True
    assert list(cfg.model.lora_attn_modules) == ["q_proj", "v_proj"]
    assert cfg.max_steps_per_epoch is None and list(cfg.optimizer.betas) == [0.9, 0.95] and cfg.profiler.enabled
    assert cfg.dataset.data_files == str(tmp_path / "kowiki" / "train.csv") and cfg.dataset.packed is True
    assert cfg.tokenizer.max_seq_len == 256 and cfg.resume_from_checkpoint is False


def test_any_system_prompt_reaches_torchtune(tmp_path):
    """No quoting rules: the prompt travels in the YAML file, `=`, quotes, colons and newlines included."""
    prompt = '당신은 "친절한" 도우미입니다: 한국어로 답하세요.\n규칙: a=b, x == y, #1 {중괄호} [대괄호] ${not.a.ref}'
    pl = _plan(tmp_path, "finetune_instruct", system_prompt=prompt,
               datasets={"kolima": 2.0, "bilima_en_ko": 0.5, "bilima_ko_en": 0, "lima_en": 0})
    cfg = _torchtune_reads(pl.run_config_text, tmp_path)
    assert cfg.dataset.new_system_prompt == prompt
    assert dict(cfg.dataset.weights) == {"kolima": 2.0, "bilima_en_ko": 0.5, "bilima_ko_en": 0.0, "lima_en": 0.0}
    assert cfg.dataset.train_on_input is False and cfg.dataset.seed == 1
    default = _plan(tmp_path / "default", "finetune_instruct")
    assert _torchtune_reads(default.run_config_text, tmp_path).dataset.new_system_prompt is None


def test_tune_overrides_may_not_set_what_a_param_sets(tmp_path):
    with pytest.raises(InputError, match="tune_overrides: optimizer.lr is set by the stage"):
        _plan(tmp_path, tune_overrides={"optimizer.lr": 0.1})
    with pytest.raises(InputError, match="tune_overrides: optimizer.lr is set by the stage"):
        # as `dvc exp run -S finetune_base.tune_overrides.optimizer.lr=0.1` writes it
        _plan(tmp_path, tune_overrides={"optimizer": {"lr": 0.1}})
    with pytest.raises(InputError, match="tune_overrides: dataset.weights.kolima is set by the stage"):
        _plan(tmp_path, "finetune_instruct", tune_overrides={"dataset.weights.kolima": 3.0})  # inside a stage value
    nested = _plan(tmp_path, tune_overrides={"optimizer": {"betas": [0.9, 0.95]}})
    assert list(_torchtune_reads(nested.run_config_text, tmp_path).optimizer.betas) == [0.9, 0.95]


def test_config_hash_tracks_what_is_trained(tmp_path):
    from koblla.finetune.run_key import config_hash, run_key
    from koblla.finetune.tune_config import base_values, finished_config, stage_config

    model = fake_model_dir(tmp_path / "model")

    def cfg(**kw):
        p = section_params("finetune_base", **kw)
        return stage_config(BASE_CFG, base_values(p, model, tmp_path, 1), p.tune_overrides, "finetune_base")

    def key(c):
        return run_key(c, [model])

    attempt = finished_config(cfg(), tmp_path / "elsewhere", True, BASE_CFG)  # where and whether it resumes
    assert key(cfg()) == key(attempt) and config_hash(cfg()) == config_hash(attempt)
    assert key(cfg()) != key(cfg(lr=1e-4)) and config_hash(cfg()) != config_hash(cfg(lr=1e-4))
    before, before_hash = key(cfg()), config_hash(cfg())
    (model / "config.json").write_text((model / "config.json").read_text() + " ")
    assert key(cfg()) != before  # a changed init checkpoint starts a fresh run
    assert config_hash(cfg()) == before_hash  # the published hash names the config only


def test_published_config_is_the_same_in_every_clone(tmp_path):
    """Inputs with other mtimes (a fresh clone, a `dvc checkout`) get the same scratch folder and the same published
    config text and hash, so bitwise-equal weights give an equal model folder and nothing downstream reruns."""
    from koblla.finetune.runner import plan

    job = _job(tmp_path)
    first = plan(job)
    for f in [*job.model_dir.rglob("*"), *(tmp_path / "kowiki").rglob("*")]:
        if f.is_file():
            os.utime(f, ns=(1, 1))
    second = plan(job)
    assert first.work == second.work
    assert first.config_text == second.config_text and first.config_hash == second.config_hash
    assert f"output_dir: {tmp_path / 'scratch' / 'finetune_base'}\n" in first.config_text
    assert "resume_from_checkpoint: false" in first.config_text
    assert f"output_dir: {first.work}\n" in first.run_config_text  # the run itself writes to its own folder


def test_run_key_comes_from_content_not_mtimes(tmp_path, monkeypatch):
    """Two clones (or two nodes) holding copies of the same inputs, with other mtimes, compute the same scratch key;
    one changed byte gives another key."""
    import shutil

    from koblla.finetune.run_key import run_key
    from koblla.finetune.tune_config import base_values, stage_config

    def key_in(clone: Path) -> str:
        monkeypatch.chdir(clone)  # the stage runs from the repo root with repo-relative paths, as dvc.yaml says
        model, data = Path("models/meta/Meta-Llama-3-8B"), Path("data/kowiki")
        cfg = stage_config(BASE_CFG, base_values(section_params("finetune_base"), model, data, 1), {}, "finetune_base")
        return run_key(cfg, [model, data / "train.csv"])

    one, two = tmp_path / "clone1", tmp_path / "clone2"
    fake_model_dir(one / "models/meta/Meta-Llama-3-8B")
    write_kowiki(one / "data/kowiki")
    shutil.copytree(one, two)  # copytree keeps mtimes: set new ones, as `dvc pull` or `cp` would
    for f in two.rglob("*"):
        if f.is_file():
            os.utime(f, ns=(10**18, 10**18))
    assert key_in(one) == key_in(two)
    with open(two / "data/kowiki/train.csv", "a", encoding="utf-8") as f:
        f.write("99,1099,https://ko.wikipedia.org/wiki?curid=99,문서 99,새 문서\n")
    assert key_in(one) != key_in(two)


# ---- bad input, before training --------------------------------------------------------------------------------
def test_missing_init_checkpoint(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        checks.check_model(tmp_path / "nope", section_params("finetune_base"), "models.base_dir")


def test_seq_len_above_model_max(tmp_path):
    model = fake_model_dir(tmp_path / "m", max_pos=128)
    with pytest.raises(InputError, match="max_position_embeddings 128"):
        checks.check_model(model, section_params("finetune_base", max_seq_len=256), "models.base_dir")


def test_tokenizer_model_vocab_mismatch(tmp_path):
    model = fake_model_dir(tmp_path / "m", vocab_size=32000)  # Llama 3 specials sit at 128000+
    with pytest.raises(InputError, match="vocab mismatch"):
        checks.check_model(model, section_params("finetune_base"), "models.base_dir")


def test_missing_tokenizer(tmp_path):
    model = fake_model_dir(tmp_path / "m", with_tokenizer=False)
    with pytest.raises(InputError, match="tokenizer.model"):
        checks.check_model(model, section_params("finetune_base"), "models.base_dir")


def test_empty_csv_after_filtering(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('id,revid,url,title,text\n1,1,u,t,""\n2,2,u,t,"   "\n', encoding="utf-8")
    with pytest.raises(InputError, match="empty dataset after filtering"):
        checks.check_text_csv(path, section_params("finetune_base"))
    path.write_text("id,title\n1,t\n", encoding="utf-8")
    with pytest.raises(InputError, match="no 'text' column"):
        checks.check_text_csv(path, section_params("finetune_base"))


def test_csv_too_small_for_one_step(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,revid,url,title,text\n1,1,u,t,짧은 글\n", encoding="utf-8")
    with pytest.raises(InputError, match="fewer than one optimizer step"):
        checks.check_text_csv(path, section_params("finetune_base"))


def test_chat_sets_empty_or_missing(tmp_path):
    d = write_lima_ko(tmp_path / "lima")
    assert checks.check_chat_sets(d, section_params("finetune_instruct")) == {name: 8 for name in INSTRUCT_SETS}
    for name in INSTRUCT_SETS:  # no assistant answers anywhere
        (d / f"{name}.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(InputError, match="empty dataset after filtering"):
        checks.check_chat_sets(d, section_params("finetune_instruct"))
    (d / "kolima.jsonl").unlink()
    with pytest.raises(InputError, match="kolima.jsonl: missing"):
        checks.check_chat_sets(d, section_params("finetune_instruct"))


def test_stage_turns_bad_input_into_exit_code_2(tmp_path, capsys):
    from finetune_helpers import write_params

    from koblla.cli import run_stage
    from stages.finetune_base import main

    params = write_params(tmp_path / "params.yaml")
    rc = run_stage(main, ["--params", str(params), "--model-dir", str(tmp_path / "missing"),
                          "--data-dir", str(write_kowiki(tmp_path / "kowiki")), "--out", str(tmp_path / "o"),
                          "--adapter-out", str(tmp_path / "a"), "--metrics", str(tmp_path / "m.json"),
                          "--live-dir", str(tmp_path / "live"), "--scratch", str(tmp_path / "scratch")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_instruct_refuses_metas_instruct_weights(tmp_path, capsys):
    from finetune_helpers import write_params

    from koblla.cli import run_stage
    from stages.finetune_instruct import main

    inst = fake_model_dir(tmp_path / "Meta-Llama-3-8B-Instruct")
    params = write_params(tmp_path / "params.yaml")
    text = params.read_text() + f"models:\n  base_dir: x\n  instruct_dir: {inst}\n"
    params.write_text(text)
    rc = run_stage(main, ["--params", str(params), "--model-dir", str(inst), "--data-dir", str(tmp_path),
                          "--out", str(tmp_path / "o"), "--adapter-out", str(tmp_path / "a"),
                          "--metrics", str(tmp_path / "m.json"), "--live-dir", str(tmp_path / "l")])
    assert rc == 2 and "chat_vector" in capsys.readouterr().err


# ---- CPT data: whole documents, packed ---------------------------------------------------------------------
def test_packed_text_keeps_long_documents_whole(tmp_path, tiny_tokenizer):
    """torchtune's text_completion_dataset truncates each document to max_seq_len; ours packs all of it."""
    from torchtune.datasets import text_completion_dataset

    from koblla.finetune.data import packed_text_dataset

    path = tmp_path / "train.csv"
    docs = ["가" * 300, "short one", "나다" * 50]  # 900 + 9 + 300 bytes = byte-level tokens
    path.write_text("id,text\n" + "".join(f'{i},"{d}"\n' for i, d in enumerate(docs)), encoding="utf-8")
    kw = dict(source="csv", data_files=str(path), column="text", split="train", na_filter=False)
    ds = packed_text_dataset(tiny_tokenizer, **kw)  # max_seq_len 256
    total = sum(len(d.encode()) + 2 for d in docs)  # + BOS and EOS per document
    real = sum(int((ds[i]["labels"] != -100).sum()) for i in range(len(ds)))
    assert real == total and len(ds) == -(-total // 256)  # nothing lost, every pack but the last full
    for i in range(len(ds)):
        pos, lens = ds[i]["input_pos"], ds[i]["seq_lens"]
        assert int(lens.sum()) == 256
        start = 0
        for n in lens.tolist():  # positions rise by one inside every segment (no wrap-around)
            seg = pos[start:start + n]
            assert (seg[1:] - seg[:-1] == 1).all()
            start += n
    stock = text_completion_dataset(tiny_tokenizer, packed=True, **kw)
    assert sum(int((stock[i]["labels"] != -100).sum()) for i in range(len(stock))) < total  # truncates


# ---- instruct mix --------------------------------------------------------------------------------------------
def test_mix_indices_weights():
    from koblla.finetune.data import mix_indices

    pairs = mix_indices({"a": 10, "b": 10, "c": 4}, {"a": 2.0, "b": 0.5, "c": 1.0}, seed=0)
    names = [n for n, _ in pairs]
    assert names.count("a") == 20 and names.count("b") == 5 and names.count("c") == 4
    assert len({j for n, j in pairs if n == "b"}) == 5  # a random half, no repeats
    assert pairs == mix_indices({"a": 10, "b": 10, "c": 4}, {"a": 2.0, "b": 0.5, "c": 1.0}, seed=0)


def test_lima_mix_masks_everything_but_assistant(tmp_path, tiny_tokenizer):
    from koblla.finetune.data import lima_mix_dataset

    d = write_lima_ko(tmp_path / "lima")
    ds = lima_mix_dataset(tiny_tokenizer, data_dir=str(d), weights={"kolima": 1.0, "bilima_ko_en": 0.5},
                          new_system_prompt="시스템 프롬프트")
    assert len(ds) == 8 + 4
    sample = ds[0]
    tokens, labels = sample["tokens"], sample["labels"]
    trained = tiny_tokenizer.decode([t for t, lab in zip(tokens, labels, strict=True) if lab != -100])
    assert "서울입니다" in trained and "수도는 어디" not in trained and "시스템" not in trained
    assert "시스템 프롬프트" in tiny_tokenizer.decode(tokens, skip_special_tokens=False)


def test_lima_en_is_weighted_like_the_other_sets(tmp_path, tiny_tokenizer):
    """lima_en.jsonl (translate's unchanged English conversations) is a set of the mix: in at any weight > 0 (as in
    params.yaml), out at 0, where the file need not even exist."""
    from koblla.finetune.data import lima_mix_dataset

    assert repo_params()["finetune_instruct"]["datasets"]["lima_en"] > 0  # in the default mix
    d = write_lima_ko(tmp_path / "lima")
    for w, n in ((0.0, 24), (0.5, 28), (1.0, 32), (2.0, 40)):
        p = section_params("finetune_instruct", datasets={**{k: 1.0 for k in INSTRUCT_SETS}, "lima_en": w})
        assert ("lima_en" in checks.check_chat_sets(d, p)) == (w > 0)
        ds = lima_mix_dataset(tiny_tokenizer, data_dir=str(d), weights=p.datasets, seed=1)
        trained = [tiny_tokenizer.decode([t for t, lab in zip(s["tokens"], s["labels"], strict=True) if lab != -100])
                   for s in ds]
        english_chats = sum("What is" in tiny_tokenizer.decode(s["tokens"]) and "Seoul" in a
                            for s, a in zip(ds, trained, strict=True))
        assert len(ds) == n and english_chats == n - 24, w  # lima_en's chats: English question, English answer
    (d / "lima_en.jsonl").unlink()
    off = section_params("finetune_instruct", datasets={"kolima": 1.0, "bilima_en_ko": 0.0, "bilima_ko_en": 0.0,
                                                        "lima_en": 0.0})
    assert checks.check_chat_sets(d, off) == {"kolima": 8}
    with pytest.raises(InputError, match="lima_en.jsonl: missing"):
        checks.check_chat_sets(d, section_params("finetune_instruct"))


@pytest.fixture()
def tiny_tokenizer(tmp_path):
    from torchtune.models.llama3 import llama3_tokenizer

    model = fake_model_dir(tmp_path / "tok")
    return llama3_tokenizer(str(model / "original" / "tokenizer.model"), max_seq_len=256)


# ---- DVCLive logger and metrics ------------------------------------------------------------------------------
def _rows(tsv: Path) -> list[int]:
    return [int(line.split("\t")[0]) for line in tsv.read_text().splitlines()[1:]]


def test_published_curves_leave_wall_times_out_of_the_dvc_output(tmp_path):
    """A rerun must not change dvc.lock: tokens/s curves, steps.jsonl and the tokens/s summary go beside the output."""
    from koblla.finetune.dvclive_logger import DVCLiveLogger, publish_curves

    work = tmp_path / "work"
    lg = DVCLiveLogger(str(work))
    for s in (1, 2):
        lg.log_dict({"loss": 3.0 - s / 10, "lr": 1e-4, "tokens_per_second_per_gpu": 100.0 * s}, step=s)
    lg.close()
    dest, timings = tmp_path / "live", tmp_path / "live.timings"
    publish_curves(work, dest, timings)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "metrics.json", "plots/metrics/loss.tsv", "plots/metrics/lr.tsv"]
    assert json.loads((dest / "metrics.json").read_text()) == {"loss": 2.8, "lr": 1e-4, "step": 2}
    assert sorted(p.name for p in timings.iterdir()) == ["steps.jsonl", "tokens_per_second.tsv"]


def test_dvclive_logger_writes_curves_and_resumes(tmp_path):
    from koblla.finetune.dvclive_logger import DVCLiveLogger, read_steps

    live, marker = tmp_path / "live", tmp_path / "recipe_state.pt"
    lg = DVCLiveLogger(str(live), checkpoint_marker=str(marker))
    for s in (1, 2, 3):
        lg.log_dict({"loss": 3.0 - s / 10, "lr": 1e-4, "tokens_per_second_per_gpu": 100.0}, step=s)
    marker.write_text("checkpoint after step 3")
    time.sleep(0.05)
    lg.log_dict({"loss": 2.0, "lr": 1e-4, "tokens_per_second_per_gpu": 100.0}, step=4)  # lost with the crash
    lg.close()
    metrics = live / "plots" / "metrics"
    assert {p.name for p in metrics.iterdir()} == {"loss.tsv", "lr.tsv", "tokens_per_second.tsv"}
    assert _rows(metrics / "loss.tsv") == [1, 2, 3, 4]
    # torchtune 0.6.1 restarts its step count at 1 after a resume: the logger continues at 4
    # the checkpoint was written between steps 3 and 4: its mtime comes from their records, not from the clock now
    # (at "now - 0.02 s" a loaded machine could put it after step 4)
    t3, t4 = (r["time"] for r in read_steps(live)[2:4])
    assert t3 < t4
    os.utime(marker, ((t3 + t4) / 2, (t3 + t4) / 2))
    lg2 = DVCLiveLogger(str(live), resume=True, checkpoint_marker=str(marker))
    lg2.log_dict({"loss": 1.5, "lr": 1e-4, "tokens_per_second_per_gpu": 100.0, "grad_norm": 0.5, "tokens": 77},
                 step=1)
    lg2.close()
    assert read_steps(live)[-1]["tokens"] == 77  # our recipes log the step's token count: kept as is
    assert not (metrics / "tokens.tsv").exists()
    assert _rows(metrics / "loss.tsv") == [1, 2, 3, 4]
    assert [r["step"] for r in read_steps(live)] == [1, 2, 3, 4]
    assert read_steps(live)[-1]["loss"] == 1.5 and read_steps(live)[-1]["first_in_process"]
    assert json.loads((live / "metrics.json").read_text())["step"] == 4


def test_summarize_counts_tokens_and_times_without_the_first_step():
    from koblla.finetune.report import summarize

    recs = [{"step": 1, "loss": 3.0, "tokens": 500, "seconds": 50.0, "first_in_process": True},
            {"step": 2, "loss": 2.5, "tokens": 100, "seconds": 1.0, "first_in_process": False},
            {"step": 3, "loss": 2.0, "tokens": 300, "seconds": 1.0, "first_in_process": False}]
    s = summarize(recs)
    # every step's counted tokens; throughput from the steps with a clean start time only
    assert s["tokens_seen"] == 900 and s["tokens_per_second"] == 200.0 and s["final_loss"] == 2.0
    assert s["steps"] == 3


# ---- --help ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["finetune_base", "finetune_instruct"])
def test_help_starts_with_the_command(stage):
    out = subprocess.run([sys.executable, "-m", f"stages.{stage}", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert f"python -m stages.{stage} --model-dir" in out.splitlines()[2] or \
        f"python -m stages.{stage} --model-dir" in out
    assert "--live-dir" in out and "--scratch" in out
