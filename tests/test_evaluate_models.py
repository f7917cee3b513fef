"""evaluate on the tiny Llama-3 checkpoints: real lm-eval, real generation, the chat entry point."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from params_helpers import params_with

EVALS = REPO_ROOT / "evals"


@pytest.fixture(scope="module")
def tiny_base(tiny_checkpoints):
    from koblla.evaluate.modeldir import load_model

    return load_model(tiny_checkpoints[0])


def _lm(cls, model, tokenizer, batch_size):
    return cls(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")


def test_continuation_logits_hflm_matches_hflm(tiny_base):
    """The speed-up asks the model for fewer positions, yet returns HFLM's numbers for every request."""
    from lm_eval.models.huggingface import HFLM

    from koblla.evaluate.harness import continuation_logits_hflm

    model, tok = tiny_base
    texts = [("Q: " + "What is the capital of France? " * n + "\nA:", " Paris is the capital." * m)
             for n, m in [(1, 1), (12, 2), (30, 1), (3, 5), (25, 3), (1, 9), (29, 1)]]
    texts += [("서울은 대한민국의 수도이다. 질문: 서울은 수도인가? 답변:", c) for c in (" 예", " 아니오")]
    reqs = [((c, x), tok(c, add_special_tokens=False)["input_ids"], tok(x, add_special_tokens=False)["input_ids"])
            for c, x in texts]
    fast_cls = continuation_logits_hflm()
    fast = _lm(fast_cls, model, tok, batch_size=3)
    kept = []
    orig = fast._model_call

    def spy(inps, attn_mask=None, labels=None):
        kept.append((inps.shape[1], fast._keep_logits))
        return orig(inps, attn_mask=attn_mask, labels=labels)

    fast._model_call = spy
    got = fast._loglikelihood_tokens(reqs)
    want = _lm(HFLM, model, tok, batch_size=3)._loglikelihood_tokens(reqs)
    assert len(got) == len(want) == len(reqs)
    for (g, g_greedy), (w, w_greedy) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4, rel=1e-5) and g_greedy == w_greedy
    assert any(k is not None and k < n for n, k in kept), "no call computed fewer logits than positions"


@pytest.mark.slow
def test_local_truthfulqa_mc2_scores_exactly_as_builtin(tiny_base, monkeypatch):
    """lm-eval's built-in truthfulqa_mc2 config, only redirected to our sample file, and our local variant give the
    same score on every document."""
    import lm_eval.tasks
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    from koblla.evaluate.harness import continuation_logits_hflm

    monkeypatch.chdir(REPO_ROOT)  # evals/*.yaml name their data files relative to the repo root
    sample = EVALS / "data/truthfulqa_mc_sample.jsonl"
    builtin = load_yaml(Path(lm_eval.tasks.__file__).parent / "truthfulqa/truthfulqa_mc2.yaml", resolve_func=True)
    assert builtin["dataset_path"] == "truthfulqa/truthful_qa"
    builtin.pop("tag", None)
    builtin.update(dataset_path="json", dataset_name=None,
                   dataset_kwargs={"data_files": {"validation": str(sample)}})
    model, tok = tiny_base
    lm = _lm(continuation_logits_hflm(), model, tok, batch_size=8)
    common = dict(model=lm, log_samples=True, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
                  torch_random_seed=0, fewshot_random_seed=0)
    theirs = simple_evaluate(tasks=[builtin], task_manager=TaskManager(include_defaults=False), **common)
    ours = simple_evaluate(tasks=["truthfulqa_mc2_local"],
                           task_manager=TaskManager(include_path=str(EVALS), include_defaults=False), **common)
    t_docs = {s["doc_id"]: s for s in theirs["samples"]["truthfulqa_mc2"]}
    o_docs = {s["doc_id"]: s for s in ours["samples"]["truthfulqa_mc2_local"]}
    assert len(o_docs) == len(t_docs) == 24
    for i, s in o_docs.items():
        assert s["doc"] == t_docs[i]["doc"]
        assert s["arguments"] == t_docs[i]["arguments"]  # same prompts and choices
        assert s["acc"] == t_docs[i]["acc"]  # exactly
    acc_o = ours["results"]["truthfulqa_mc2_local"]["acc,none"]
    acc_t = theirs["results"]["truthfulqa_mc2"]["acc,none"]
    assert acc_o == acc_t
    assert ours["versions"]["truthfulqa_mc2_local"] == theirs["versions"]["truthfulqa_mc2"] == 3.0
    assert 0.05 < acc_o < 0.95, "a random model should not score near 0 or 1 on the sample"




def _evaluate(tmp_path, name, model_dir, kind, params):
    out = subprocess.run(
        [sys.executable, "-m", "stages.evaluate", "--params", str(params), "--name", name, "--model-dir",
         str(model_dir), "--kind", kind, "--metrics", str(tmp_path / f"metrics/{name}.json"),
         "--generations", str(tmp_path / f"gen/{name}.jsonl")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out


@pytest.mark.slow
def test_evaluate_and_report_stages_on_tiny_models(tiny_checkpoints, tmp_path):
    base, instruct = tiny_checkpoints
    tasks = ["truthfulqa_mc2_local", "kobest_copa_local", "kobest_boolq_local"]
    params = params_with(tmp_path, "evaluate", tasks=tasks, limit=3,
                         generation={"prompts": "evals/prompts/v1.jsonl", "max_new_tokens": 6, "limit": 3})
    out = _evaluate(tmp_path, "llama3_inst", instruct, "instruct", params)
    assert "llama3_inst:" in out.stdout
    _evaluate(tmp_path, "llama3", base, "base", params)

    m = json.loads((tmp_path / "metrics/llama3_inst.json").read_text())
    assert all(type(v) is float for v in m.values())
    for task, version in [("truthfulqa_mc2_local", 3.0), ("kobest_copa_local", 1.0), ("kobest_boolq_local", 1.0)]:
        assert 0.0 <= m[f"{task}/acc"] <= 1.0 and f"{task}/acc_stderr" in m
        assert m[f"{task}/version"] == version and m[f"{task}/n"] == 3.0
    assert "kobest_copa_local/f1" in m

    gens = [json.loads(x) for x in (tmp_path / "gen/llama3_inst.jsonl").read_text().splitlines()]
    assert len(gens) == 3 and all(g["mode"] == "chat" and g["prompts"] == "v1" for g in gens)
    ko = [g for g in gens if g["lang"] == "ko"]
    assert ko and all(g["register"]["label"] in ("jondaetmal", "banmal", "none") for g in ko)
    assert all(g["register_expected"] == "jondaetmal" for g in ko)
    base_gens = [json.loads(x) for x in (tmp_path / "gen/llama3.jsonl").read_text().splitlines()]
    assert all(g["mode"] == "completion" for g in base_gens)

    # The report needs all five: reuse the two results under the other names (same kinds).
    for name, src in [("koblla", "llama3"), ("koblla_chatvec", "llama3_inst"), ("koblla_inst", "llama3_inst")]:
        (tmp_path / f"metrics/{name}.json").write_text((tmp_path / f"metrics/{src}.json").read_text())
    rep = subprocess.run(
        [sys.executable, "-m", "stages.report", "--metrics-dir", str(tmp_path / "metrics"),
         "--out", str(tmp_path / "results.md"), "--plot", str(tmp_path / "results.png"),
         "--plot-data", str(tmp_path / "plot.csv")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "results.md").read_text()
    assert "KoBLLa-Inst." in md and "truthfulqa_mc2_local (acc, v3.0, en)" in md and "Retention at a glance" in md
    assert "KoBLLa + ChatVec.** vs Llama-3-Inst.: English Δ +0.0000" in md
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_chat_streams_an_answer(tiny_checkpoints):
    from koblla.chat import Chat
    from koblla.evaluate.modeldir import load_model

    model, tok = load_model(tiny_checkpoints[1])
    chat = Chat(model, tok, max_new_tokens=12)
    assert chat.own_template
    chunks: list[str] = []
    answer = chat.reply("What is the capital of France?", on_text=chunks.append)
    assert answer and "".join(chunks).strip() == answer
    if " " in answer:
        assert len(chunks) >= 2, "text should arrive in pieces as tokens are generated"
    chat.reply("서울은 어때?", on_text=lambda s: None)
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user", "assistant"]


def test_chat_on_a_base_model_uses_llama3_template(tiny_checkpoints):
    from koblla.chat import LLAMA3_CHAT_TEMPLATE, Chat
    from koblla.evaluate.modeldir import load_model

    model, tok = load_model(tiny_checkpoints[0])
    tok.chat_template = None
    chat = Chat(model, tok, max_new_tokens=4)
    assert not chat.own_template and tok.chat_template == LLAMA3_CHAT_TEMPLATE
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>" \
                     "<|start_header_id|>assistant<|end_header_id|>\n\n"


def test_chat_entry_point_reads_stdin(tiny_checkpoints):
    out = subprocess.run(
        [sys.executable, "-m", "stages.chat", "--model-dir", str(tiny_checkpoints[1]), "--max-new-tokens", "8"],
        input="What is the capital of France?\n/reset\n안녕, 너는 누구야?\n", cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), "no answer on stdout"
    assert "chat: 2 turn(s)" in out.stderr and "(new conversation)" in out.stderr
