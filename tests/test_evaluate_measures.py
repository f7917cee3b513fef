"""The recipe's own measures (ko_bpb, en_bpb, chat_nll_en/ko) against a direct transformers computation, and any
user task YAML over a file the stage has never seen, scored as stock lm-eval HFLM scores it."""
from __future__ import annotations

import json
import math

import pytest
from conftest import REPO_ROOT
from params_helpers import section_params

EVALS = REPO_ROOT / "evals"
KO_DOCS = ["서울은 대한민국의 수도이며 가장 큰 도시이다. 한강이 도시 가운데를 흐른다.",
           "김치는 배추와 무를 소금에 절인 뒤 양념하여 발효시킨 한국의 전통 음식이다."]
EN_DOCS = ["The river runs through the middle of the old town.", "Bread rises because yeast makes gas."]
CHATS = [[{"role": "user", "content": "Why is the sky blue?"},
          {"role": "assistant", "content": "Air scatters blue light more than red light."},
          {"role": "user", "content": "And sunsets?"},
          {"role": "assistant", "content": "At sunset the light crosses more air, so red is left."}],
         [{"role": "user", "content": "하늘은 왜 파래?"},
          {"role": "assistant", "content": "공기가 파란 빛을 더 많이 흩뜨리기 때문입니다."}]]


@pytest.fixture(scope="module")
def tiny_base(tiny_checkpoints):
    from koblla.evaluate.modeldir import load_model

    return load_model(tiny_checkpoints[0])


def _sum_logprob(model, ids: list[int], start: int) -> float:
    """Sum of log p(ids[i] | ids[:i]) for i >= start: one plain forward pass, no lm-eval."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[i - 1, ids[i]] for i in range(start, len(ids))))


def _direct(model, tok):
    """bits/byte, word perplexity of the text sets and NLL/byte of the chats, computed by hand."""
    def text_scores(docs):
        ll = sum(_sum_logprob(model, [tok.bos_token_id] + tok(d, add_special_tokens=False)["input_ids"], 1)
                 for d in docs)
        n_bytes = sum(len(d.encode()) for d in docs)
        n_words = sum(len(d.split()) for d in docs)
        return {"bits_per_byte": -ll / n_bytes / math.log(2), "word_perplexity": math.exp(-ll / n_words),
                "byte_perplexity": math.exp(-ll / n_bytes)}

    nll, n_bytes = 0.0, 0
    for msgs in CHATS:
        prefix = "<|begin_of_text|>"
        for m in msgs:
            head = f"<|start_header_id|>{m['role']}<|end_header_id|>"
            if m["role"] == "assistant":
                ctx = tok(prefix + head, add_special_tokens=False)["input_ids"]
                full = tok(prefix + head + "\n\n" + m["content"] + "<|eot_id|>", add_special_tokens=False)["input_ids"]
                assert full[: len(ctx)] == ctx
                nll -= _sum_logprob(model, full, len(ctx))
                n_bytes += len(m["content"].encode())
            prefix += head + "\n\n" + m["content"] + "<|eot_id|>"
    return text_scores(KO_DOCS), text_scores(EN_DOCS), nll / n_bytes


def test_measures_match_a_direct_transformers_computation(tiny_base, tmp_path, monkeypatch):
    """Also covers params evaluate.data_files: every task reads a file given there instead of its YAML's."""
    from koblla.evaluate.harness import flatten_results, run_lm_eval
    from koblla.evaluate.tasks import check_local_samples, make_task_manager, task_specs

    monkeypatch.chdir(REPO_ROOT)
    (tmp_path / "ko.csv").write_text("id,text\n" + "".join(f'{i},"{d}"\n' for i, d in enumerate(KO_DOCS)))
    (tmp_path / "en.txt").write_text("\n\n".join(EN_DOCS) + "\n")
    for name in ("en", "ko"):
        (tmp_path / f"chat_{name}.jsonl").write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n"
                                                            for c in CHATS))
    tasks = ["ko_bpb", "en_bpb", "chat_nll_en", "chat_nll_ko"]
    files = {"ko_bpb": str(tmp_path / "ko.csv"), "en_bpb": str(tmp_path / "en.txt"),
             "chat_nll_en": str(tmp_path / "chat_en.jsonl"), "chat_nll_ko": str(tmp_path / "chat_ko.jsonl")}
    p = section_params("evaluate", tasks=tasks, limit=None, batch_size=3, data_files=files)
    tm = make_task_manager(tasks, EVALS)
    assert check_local_samples(tm, tasks, EVALS, files) == {"ko_bpb": None, "en_bpb": None, "chat_nll_en": 2,
                                                            "chat_nll_ko": 2}
    model, tok = tiny_base
    flat = flatten_results(run_lm_eval(model, tok, tm, task_specs(tm, tasks, EVALS, files), p, False, 0), tasks)
    ko, en, chat_nll = _direct(model, tok)
    for task, want in (("ko_bpb", ko), ("en_bpb", en)):
        assert flat[f"{task}/n"] == 2.0
        for metric, value in want.items():
            got, want_value = flat[f"{task}/{metric}"], value
            if metric == "word_perplexity":  # exp() of a sum: compare its log, as bpb and byte_perplexity are
                got, want_value = math.log(got), math.log(want_value)
            assert got == pytest.approx(want_value, rel=1e-5), (task, metric)
    for task in ("chat_nll_en", "chat_nll_ko"):
        assert flat[f"{task}/n"] == 3.0  # one document per assistant turn
        assert flat[f"{task}/nll_per_byte"] == pytest.approx(chat_nll, rel=1e-5)
    assert 0 < en["bits_per_byte"] < 40


def test_data_files_must_name_requested_local_tasks(tmp_path):
    from koblla.errors import ParamsError
    from koblla.evaluate.tasks import make_task_manager, task_specs

    tm = make_task_manager(["ko_bpb"], EVALS)
    with pytest.raises(ParamsError, match="en_bpb"):
        task_specs(tm, ["ko_bpb"], EVALS, {"en_bpb": str(tmp_path / "x.txt")})


USER_TASK = """\
task: my_quiz
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{q}}}}\\nAnswer:"
doc_to_choice: "{{{{options}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: 2.0
"""
USER_TEXT_TASK = """\
task: my_text
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{body}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
"""


@pytest.mark.slow
def test_stage_runs_a_user_task_over_a_new_file_like_stock_hflm(tiny_checkpoints, tmp_path, monkeypatch):
    """A task YAML and data file the stage has never seen (outside evals/, a schema of the user's own), run by
    run_evaluate with params evaluate.evals_dir, scores exactly what stock lm-eval HFLM scores on it."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from koblla.evaluate import run_evaluate
    from koblla.evaluate.modeldir import load_model

    monkeypatch.chdir(REPO_ROOT)
    evals = tmp_path / "my_evals"
    evals.mkdir()
    quiz = tmp_path / "quiz.jsonl"
    rows = [{"q": "What colour is the sky on a clear day?", "options": ["blue", "green", "a large red brick"],
             "answer": 0},
            {"q": "수도는 어디인가?", "options": ["서울", "바다", "지하철 2호선의 종점"], "answer": 0},
            {"q": "How many legs does a cat have?", "options": ["three", "four", "none at all"], "answer": 1}]
    quiz.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"body": b}, ensure_ascii=False) + "\n" for b in KO_DOCS + EN_DOCS))
    (evals / "my_quiz.yaml").write_text(USER_TASK.format(data=quiz))
    (evals / "my_text.yaml").write_text(USER_TEXT_TASK.format(data=text))

    tasks = ["my_quiz", "my_text"]
    p = section_params("evaluate", tasks=tasks, limit=None, batch_size=2, evals_dir=str(evals), bootstrap_iters=0,
                                 generation={"prompts": "evals/prompts/v1.jsonl", "max_new_tokens": 2, "limit": 1})
    ours = run_evaluate("llama3", tiny_checkpoints[0], "base", p, p.evals_dir, tmp_path / "m.json",
                        tmp_path / "g.jsonl", seed=0)
    model, tok = load_model(tiny_checkpoints[0])

    def stock(task, **kw):
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu", **kw)
        return simple_evaluate(model=lm, tasks=[task],
                               task_manager=TaskManager(include_path=str(evals), include_defaults=False),
                               num_fewshot=0, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
                               torch_random_seed=0, fewshot_random_seed=0)["results"][task]

    quiz = stock("my_quiz")
    for metric in ("acc", "acc_norm"):
        assert ours[f"my_quiz/{metric}"] == quiz[f"{metric},none"]
    # Rolling tasks: ours encodes [BOS, text] (harness.py); stock HFLM does the same with add_bos_token=False.
    text_scores = stock("my_text", add_bos_token=False)
    for metric in ("bits_per_byte", "word_perplexity", "byte_perplexity"):
        assert ours[f"my_text/{metric}"] == pytest.approx(text_scores[f"{metric},none"], rel=1e-6)
    assert ours["my_quiz/n"] == 3.0 and ours["my_text/n"] == 4.0


def test_auto_batch_size_is_detected_once_longest_first(tiny_base):
    """batch_size auto: one probe for all input-length groups, groups scored longest first, same numbers."""
    from koblla.evaluate.harness import continuation_logits_hflm

    model, tok = tiny_base
    texts = [("Q: " + "Why? " * n + "\nA:", " Because." * m) for n, m in [(1, 1), (40, 2), (80, 1), (3, 2)]]
    reqs = [((c, x), tok(c, add_special_tokens=False)["input_ids"], tok(x, add_special_tokens=False)["input_ids"])
            for c, x in texts]
    cls = continuation_logits_hflm()
    lm = cls(pretrained=model, tokenizer=tok, batch_size="auto", max_batch_size=4, device="cpu")
    probes, widths = [], []
    orig_detect, orig_call = lm._detect_batch_size, lm._model_call
    lm._detect_batch_size = lambda requests=None, pos=0: probes.append(len(requests)) or orig_detect(requests, pos)
    lm._model_call = lambda inps, **kw: widths.append(inps.shape[1]) or orig_call(inps, **kw)
    got = lm._loglikelihood_tokens(reqs)
    assert probes == [1]
    scored = widths[-len([w for w in widths[5:]]):]  # after the probe's 5 forward passes
    assert scored == sorted(scored, reverse=True), scored
    want = cls(pretrained=model, tokenizer=tok, batch_size=4, device="cpu")._loglikelihood_tokens(reqs)
    assert [g for g, _ in got] == pytest.approx([w for w, _ in want], abs=1e-4)


def test_builtin_task_data_is_checked_before_a_model_loads(tmp_path, monkeypatch):
    """Offline and uncached: the stage fails at once naming the task, its dataset id and the fetch command."""
    from koblla.errors import InputError
    from koblla.evaluate import run_evaluate
    from koblla.evaluate.hubdata import hub_datasets
    from koblla.evaluate.tasks import make_task_manager

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty_cache")
    tasks = ["truthfulqa_mc2", "ko_bpb"]
    (tmp_path / "ko.csv").write_text("id,text\n1,한국어 문서\n")  # a fresh clone has no data/kowiki/test.csv yet
    tm = make_task_manager(tasks + ["kmmlu", "haerae"], EVALS)
    assert hub_datasets(tm, tasks, EVALS) == {"truthfulqa_mc2": ("truthfulqa/truthful_qa", "multiple_choice")}
    groups = hub_datasets(tm, ["kmmlu", "haerae"], EVALS)  # what fetch_eval_data fetches: every subset
    assert sum(d == "HAERAE-HUB/KMMLU" for d, _ in groups.values()) == 45
    assert sum(d == "HAERAE-HUB/HAE_RAE_BENCH" for d, _ in groups.values()) == 5
    p = section_params("evaluate", tasks=tasks, limit=None, data_files={"ko_bpb": str(tmp_path / "ko.csv")})
    with pytest.raises(InputError, match=r"task truthfulqa_mc2: its dataset truthfulqa/truthful_qa \(config "
                                         r"multiple_choice\).*python -m stages.fetch_eval_data"):
        run_evaluate("x", tmp_path / "no_model_needed", "base", p, EVALS, tmp_path / "m.json", tmp_path / "g.jsonl")


def test_formal_share_is_null_when_nothing_can_be_judged():
    from koblla.evaluate.generate import measure_register

    assert measure_register("12345 ...")["formal_share"] is None  # no Korean sentence: not "100 % formal"
    assert measure_register("")["label"] == "none"
    assert measure_register("서울은 한국의 수도입니다. 사람이 많습니다.")["formal_share"] == 1.0
