"""evaluate without a model: params, local task folder, sample-file schemas, bad-input errors, flattening."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from params_helpers import params_with, section_params

from koblla.errors import InputError, ParamsError
from koblla.evaluate.params import EvaluateParams
from koblla.evaluate.samples import SCHEMAS, validate_sample_file
from koblla.params import load_section

EVALS = REPO_ROOT / "evals"
LOCAL_TASKS = sorted(p.stem for p in EVALS.glob("*_local.yaml"))


# ---- params ------------------------------------------------------------------------------------------------------
def test_params_yaml_section_is_valid():
    p = load_section("evaluate", REPO_ROOT / "params.yaml")
    ours = {"ko_bpb", "en_bpb", "chat_nll_en", "chat_nll_ko"}  # KoBLLa's held-out measures, over files of ours
    assert p.tasks and all(t.endswith("_local") or t in ours for t in p.tasks), "the default must run offline"
    assert ours <= set(p.tasks), "the default report must show the recipe's effects"
    assert any(t.startswith("truthfulqa_mc2") for t in p.tasks)
    assert any(t.startswith("kobest") for t in p.tasks), "the default must have a Korean column"


@pytest.mark.parametrize("bad, word", [
    ({"tasks": []}, "at least one"),
    ({"tasks": ["a", "a"]}, "twice"),
    ({"limit": 0}, "limit"),
    ({"dtype": "float16"}, "float16"),
    ({"batch_size": "big"}, "batch_size"),
    ({"generation": {"base_models": "maybe"}}, "base_models"),
    ({"taks": ["x"]}, "taks"),
])
def test_params_rejects_bad_values(tmp_path, bad, word):
    with pytest.raises(ParamsError, match=word):
        load_section("evaluate", params_with(tmp_path, "evaluate", **bad))


def test_dvc_yaml_lists_every_scoring_param():
    """Every EvaluateParams key except `chat` (stages.chat only) is a declared param of evaluate@<model>, and the
    report depends on the five metrics files explicitly."""
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    declared = set(dvc["stages"]["evaluate"]["do"]["params"])
    expected = {f"evaluate.{k}" for k in EvaluateParams.model_fields if k != "chat"} | {"common.seed"}
    assert declared == expected
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert {k.split(".")[1] for k in declared if k.startswith("evaluate.")} <= set(params["evaluate"])
    models = set(dvc["stages"]["evaluate"]["foreach"])
    deps = dvc["stages"]["report"]["deps"]
    assert {f"metrics/eval/{m}.json" for m in models} <= set(deps) and "metrics/eval" not in deps


# ---- local task folder --------------------------------------------------------------------------------------------
def test_local_tasks_cover_the_real_ones():
    assert {"truthfulqa_mc1_local", "truthfulqa_mc2_local", "kobest_boolq_local", "kobest_copa_local",
            "kobest_wic_local", "kobest_hellaswag_local", "kobest_sentineg_local"} <= set(LOCAL_TASKS)


@pytest.mark.parametrize("task", LOCAL_TASKS)
def test_local_variant_equals_builtin_except_data(task):
    """Prompt, choices, target, metrics, process_results and version are lm-eval's own; only the data differs."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    builtin_name = task.removesuffix("_local")
    builtin_dir = Path(lm_eval.tasks.__file__).parent / builtin_name.split("_")[0]
    ours = load_yaml(EVALS / f"{task}.yaml", resolve_func=False)
    theirs = load_yaml(builtin_dir / f"{builtin_name}.yaml", resolve_func=False)
    data_keys = {"task", "tag", "dataset_path", "dataset_name", "dataset_kwargs", "training_split", "test_split",
                 "validation_split", "fewshot_split"}

    def norm(cfg):
        out = {}
        for k, v in cfg.items():
            if k in data_keys:
                continue
            if k == "metric_list":  # hf_evaluate only chooses where an unused per-doc function comes from
                v = [{kk: (Path(vv).name if isinstance(vv, str) and "/" in vv else vv)
                      for kk, vv in m.items() if kk != "hf_evaluate"} for m in v]
            elif isinstance(v, str) and "/" in v and v.rsplit("/", 1)[-1].startswith("utils."):
                v = Path(v).name  # !function utils.X: same function name (utils.py re-exports lm-eval's)
            out[k] = v
        return out

    assert norm(ours) == norm(theirs)
    assert ours["dataset_path"] == "json" and ours["validation_split"] == "validation"
    assert ours["metadata"]["version"] == theirs["metadata"]["version"]


def test_utils_functions_are_lm_evals_own():
    import importlib.util

    import lm_eval.tasks.kobest.utils as kobest

    spec = importlib.util.spec_from_file_location("evals_utils_under_test", EVALS / "utils.py")
    ours = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ours)
    for name in ("copa_doc_to_text", "copa_doc_to_choice", "wic_doc_to_text", "hellaswag_process_doc",
                 "sentineg_doc_to_text", "macro_f1_score"):
        assert getattr(ours, name) is getattr(kobest, name), name
    fn = ours.process_results_mc2
    assert fn.__code__.co_filename.endswith("lm_eval/tasks/truthfulqa/utils.py")
    doc = {"mc2_targets": {"labels": [1, 1, 0]}}
    res = fn(doc, [(-1.0, False), (-2.0, False), (-0.5, False)])
    import numpy as np

    p = np.exp([-1.0, -2.0, -0.5])
    assert res["acc"] == pytest.approx((p[0] + p[1]) / p.sum())


# ---- sample files -------------------------------------------------------------------------------------------------
SAMPLE_FILES = {
    "truthfulqa_mc2_local": "truthfulqa_mc_sample.jsonl",
    "kobest_boolq_local": "kobest_boolq_sample.jsonl",
    "kobest_copa_local": "kobest_copa_sample.jsonl",
    "kobest_wic_local": "kobest_wic_sample.jsonl",
    "kobest_hellaswag_local": "kobest_hellaswag_sample.jsonl",
    "kobest_sentineg_local": "kobest_sentineg_sample.jsonl",
}


@pytest.mark.parametrize("task, name", sorted(SAMPLE_FILES.items()))
def test_sample_files_match_hf_schemas(task, name):
    path = EVALS / "data" / name
    n = validate_sample_file(task, path)
    assert 20 <= n <= 30
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if "label" in rows[0]:
        labels = [r["label"] for r in rows]
        # balanced enough that a constant guess cannot look good
        assert max(labels.count(v) for v in set(labels)) / len(labels) <= 0.6, labels


def test_truthfulqa_sample_true_answers_are_not_simply_the_shortest():
    """A random model scores MC2 near 1.0 when the true answers are the shortest: lengths must be mixed."""
    rows = [json.loads(x) for x in (EVALS / "data/truthfulqa_mc_sample.jsonl").read_text().splitlines()]
    shortest_true = longest_true = 0
    for r in rows:
        ch, lab = r["mc2_targets"]["choices"], r["mc2_targets"]["labels"]
        lengths = [len(c) for c in ch]
        shortest_true += lab[lengths.index(min(lengths))] == 1
        longest_true += lab[lengths.index(max(lengths))] == 1
    assert 0.2 <= shortest_true / len(rows) <= 0.8, shortest_true
    assert 0.2 <= longest_true / len(rows) <= 0.8, longest_true


@pytest.mark.parametrize("task, record, word", [
    ("kobest_copa_local", {"premise": "a", "question": "원인", "alternative_1": "b", "label": 0}, "alternative_2"),
    ("kobest_copa_local", {"premise": "a", "question": "왜", "alternative_1": "b", "alternative_2": "c", "label": 0},
     "원인 or 결과"),
    ("kobest_boolq_local", {"paragraph": "p", "question": "q", "label": 2}, "out of range"),
    ("kobest_boolq_local", {"paragraph": "p", "question": "q", "label": "1"}, "label"),
    ("kobest_boolq_local", {"Text": "p", "Question": "q", "Answer": 1}, "paragraph"),
    ("truthfulqa_mc2_local", {"question": "q", "mc1_targets": {"choices": ["a", "b"], "labels": [0, 1]},
                              "mc2_targets": {"choices": ["a", "b"], "labels": [1, 0]}}, "listed first"),
    ("truthfulqa_mc2_local", {"question": "q", "mc1_targets": {"choices": ["a", "b"], "labels": [1, 0]},
                              "mc2_targets": {"choices": ["a"], "labels": [1, 0]}}, "one label per choice"),
])
def test_wrong_schema_is_named(tmp_path, task, record, word):
    path = tmp_path / "bad.jsonl"
    good = (EVALS / "data" / SAMPLE_FILES.get(task, "kobest_boolq_sample.jsonl")).read_text(encoding="utf-8")
    path.write_text(good.splitlines()[0] + "\n" + json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=word) as e:
        validate_sample_file(task, path)
    assert f"{path}:2" in str(e.value)


def test_sample_schema_list_covers_local_tasks():
    assert {t.removesuffix("_local") for t in LOCAL_TASKS} <= set(SCHEMAS)


# ---- task names ---------------------------------------------------------------------------------------------------
def test_local_task_names_resolve_without_builtin_index():
    from koblla.evaluate.tasks import check_local_samples, make_task_manager

    tm = make_task_manager(["truthfulqa_mc2_local", "koblla_local"], EVALS)
    assert "kobest_copa" not in tm.all_tasks  # the built-in index (~10 s) was not needed
    counts = check_local_samples(tm, ["koblla_local"], EVALS)
    assert set(counts) == set(LOCAL_TASKS)


def test_unknown_task_is_a_params_error_with_suggestions():
    from koblla.evaluate.tasks import make_task_manager

    with pytest.raises(ParamsError, match=r"truthfulqa_mc3_local.*did you mean .*truthfulqa_mc"):
        make_task_manager(["truthfulqa_mc3_local"], EVALS)


def test_task_language():
    from koblla.evaluate.tasks import task_language

    assert task_language("kobest_copa_local") == task_language("kmmlu") == task_language("haerae") == "ko"
    assert task_language("truthfulqa_mc2") == task_language("truthfulqa_mc1_local") == "en"


# ---- model folder checks (no weights needed) ------------------------------------------------------------------------
def _fake_model_dir(root: Path, vocab_size=300, bos_id=256, template=True) -> Path:
    d = root / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"vocab_size": vocab_size, "bos_token_id": bos_id, "eos_token_id": 257}))
    (d / "model.safetensors").write_bytes(b"")
    (d / "tokenizer.json").write_text(json.dumps({
        "model": {"type": "BPE", "vocab": {chr(97 + i): i for i in range(26)}},
        "added_tokens": [{"id": 256, "content": "<|begin_of_text|>"}, {"id": 257, "content": "<|eot_id|>"}],
    }))
    cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    if template:
        cfg["chat_template"] = "{{ messages }}"
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def test_model_dir_checks(tmp_path):
    from koblla.evaluate.modeldir import ModelDirError, check_model_dir

    info = check_model_dir(_fake_model_dir(tmp_path), "instruct")
    assert info.tokenizer_size == 258 and info.has_chat_template
    with pytest.raises(ModelDirError, match="does not exist"):
        check_model_dir(tmp_path / "nope")
    with pytest.raises(ModelDirError, match="no config.json"):
        check_model_dir(tmp_path)


@pytest.mark.parametrize("kwargs, kind, word", [
    ({"vocab_size": 100}, "base", "tokenizer/model mismatch.*vocab_size is 100"),
    ({"bos_id": 1}, "base", "tokenizer/model mismatch.*bos_token"),
    ({"template": False}, "instruct", "chat template"),
])
def test_model_dir_mismatch(tmp_path, kwargs, kind, word):
    from koblla.evaluate.modeldir import ModelDirError, check_model_dir

    with pytest.raises(ModelDirError, match=word):
        check_model_dir(_fake_model_dir(tmp_path, **kwargs), kind)


# ---- errors come out of the stage before any model loads ------------------------------------------------------------
def _stage(args, cwd=REPO_ROOT, timeout=120):
    return subprocess.run([sys.executable, "-m", "stages.evaluate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)




def _outs(tmp_path):
    return ["--metrics", str(tmp_path / "m.json"), "--generations", str(tmp_path / "g.jsonl")]


def test_stage_missing_model_dir(tmp_path):
    out = _stage(["--name", "x", "--model-dir", str(tmp_path / "absent"), "--kind", "base", *_outs(tmp_path)])
    assert out.returncode == 2 and "does not exist" in out.stderr, out.stderr
    assert not (tmp_path / "m.json").exists()


@pytest.mark.slow  # an unknown name makes lm-eval index its ~15k built-in configs (~15 s) before failing
def test_stage_unknown_task_fails_before_loading(tmp_path):
    model = _fake_model_dir(tmp_path)  # no real weights: reaching the load would fail differently
    params = params_with(tmp_path, "evaluate", tasks=["truthfulqa_mc2_local", "kobest_copy_local"])
    out = _stage(["--params", str(params), "--name", "x", "--model-dir", str(model), "--kind", "base",
                  *_outs(tmp_path)])
    assert out.returncode == 2 and "unknown lm-eval task" in out.stderr and "kobest_copa_local" in out.stderr
    assert "Traceback" not in out.stderr


def test_stage_bad_sample_file_fails_before_loading(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(EVALS, work / "evals")
    bad = work / "evals/data/kobest_copa_sample.jsonl"
    bad.write_text(bad.read_text(encoding="utf-8").replace('"premise"', '"sentence"', 1), encoding="utf-8")
    model = _fake_model_dir(tmp_path)
    params = params_with(tmp_path, "evaluate", tasks=["truthfulqa_mc2_local", "kobest_copa_local"])
    out = _stage(["--params", str(params), "--name", "x", "--model-dir", str(model),
                  "--kind", "base", "--evals-dir", "evals", *_outs(tmp_path)], cwd=work)
    assert out.returncode == 2, out.stderr
    assert "kobest_copa_sample.jsonl:1" in out.stderr and "premise" in out.stderr


def test_stage_tokenizer_mismatch_fails_before_loading(tmp_path):
    model = _fake_model_dir(tmp_path, vocab_size=10)
    params = params_with(tmp_path, "evaluate", tasks=["truthfulqa_mc2_local"])  # no repro output needed
    out = _stage(["--params", str(params), "--name", "x", "--model-dir", str(model), "--kind", "base",
                  *_outs(tmp_path)])
    assert out.returncode == 2 and "tokenizer/model mismatch" in out.stderr


# ---- flattening lm-eval's results -----------------------------------------------------------------------------------
def test_flatten_results_gives_plain_floats():
    import numpy as np

    from koblla.evaluate.harness import flatten_results

    results = {
        "results": {
            "truthfulqa_mc2": {"alias": "truthfulqa_mc2", "acc,none": np.float64(0.41),
                               "acc_stderr,none": np.float64(0.02)},
            "kobest_copa": {"acc,none": 0.6, "acc_stderr,none": "N/A", "f1,none": np.float32(0.55),
                            "exact_match,strict-match": 1},
            "other": {"acc,none": 0.1},
        },
        "versions": {"truthfulqa_mc2": 3.0, "kobest_copa": 1.0, "other": 1.0},
        "n-samples": {"truthfulqa_mc2": {"original": 817, "effective": 817}},
    }
    flat = flatten_results(results, ["truthfulqa_mc2", "kobest_copa"])
    assert flat == {
        "truthfulqa_mc2/acc": 0.41, "truthfulqa_mc2/acc_stderr": 0.02, "truthfulqa_mc2/version": 3.0,
        "truthfulqa_mc2/n": 817.0, "kobest_copa/acc": 0.6, "kobest_copa/f1": pytest.approx(0.55),
        "kobest_copa/exact_match@strict-match": 1.0, "kobest_copa/version": 1.0,
    }
    assert all(type(v) is float for v in flat.values())
    json.dumps(flat)


# ---- prompts and register -----------------------------------------------------------------------------------------
def test_prompt_set_v1():
    from koblla.evaluate.generate import load_prompts

    prompts = load_prompts(EVALS / "prompts/v1.jsonl")
    ko = [p for p in prompts if p.lang == "ko"]
    assert sum(p.question_register == "banmal" for p in ko) >= 3
    assert all(p.expect == "jondaetmal" for p in ko)
    assert any(p.lang == "en" for p in prompts)


def test_bad_prompt_file(tmp_path):
    from koblla.evaluate.generate import load_prompts

    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "lang": "jp", "prompt": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"p.jsonl:1"):
        load_prompts(path)


@pytest.mark.parametrize("text, label", [
    ("서울에는 경복궁과 남산타워가 있습니다. 꼭 가 보세요.", "jondaetmal"),
    ("김치찌개는 김치를 먼저 볶아요. 그다음 물을 부어요.", "jondaetmal"),
    ("하늘은 빛이 산란해서 파랗게 보여. 신기하지?", "banmal"),
    ("A spider has eight legs.", "none"),
])
def test_measure_register(text, label):  # kiwipiepy loads its model once (~3 s)
    from koblla.evaluate.generate import measure_register

    assert measure_register(text)["label"] == label


@pytest.mark.parametrize("stage", ["evaluate", "report", "chat"])
def test_help(stage):
    out = subprocess.run([sys.executable, "-m", f"stages.{stage}", "--help"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and f"python -m stages.{stage}" in out.stdout


def test_base_models_skip_writes_a_marker_record():
    from koblla.evaluate.generate import generate_samples
    generation = section_params("evaluate", generation={"base_models": "skip"}).generation
    recs = generate_samples(None, None, "llama3", "base", generation, "v1")
    assert len(recs) == 1 and "skipped" in recs[0] and recs[0]["model"] == "llama3"
