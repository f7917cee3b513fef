"""The quality gate and provider readiness against the REAL loopback server (tests/translate_server.py): every
fault class ends flagged and never in an output file; preflight, fatal 4xx with Gemini's real error body, provider
options, truncation retries, conversation context, nested fences, the English set."""
from __future__ import annotations

import json

import pytest
from params_helpers import openai_params, section_params
from translate_server import FAULT_MODES, FakeLLMServer, always, fault_cycle, sequence_for_first

from koblla.errors import KoBLLaError
from koblla.text.verbatim import mask, restore
from koblla.translate import run_translate
from koblla.translate.memory import TranslationMemory
from koblla.translate.params import TranslateParams
from koblla.translate.segment import split_message
from koblla.translate.validate import CHECKS, Limits, check_translation

SECRET = "sk-koblla-gate-1a2b3c4d5e"
N_CHUNKS = 36


@pytest.fixture(autouse=True)
def _env(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("KOBLLA_TEST_KEY", SECRET)


def make_params(srv: FakeLLMServer, openai: dict | None = None, **kw) -> TranslateParams:
    """The gate tests' params: a slow reply is no transport fault here (those are test_translate_openai's), and the
    v2 prompts carry the conversation so far."""
    return openai_params(srv, {"timeout_s": 2, "max_retries": 2, **(openai or {})}, **{"prompt_version": "v2", **kw})


def rows(d, name):
    return [json.loads(x) for x in (d / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_every_fault_class_ends_flagged_and_never_in_an_output_file(tmp_path):
    with FakeLLMServer(plan=fault_cycle()) as srv:
        m = run_translate(make_params(srv, max_attempts=2), tmp_path / "o", tmp_path / "tm", None)
        sent = list(srv.sent)
    faulty = {mode for mode, _, _ in sent if mode != "ok"}
    assert faulty == set(FAULT_MODES), f"fault classes never sent: {set(FAULT_MODES) - faulty}"
    # A chunk is accepted only if one of its replies was a correct one.
    got_ok = {src for mode, src, _ in sent if mode == "ok"}
    mem = [json.loads(x) for x in (tmp_path / "tm" / "memory.jsonl").read_text(encoding="utf-8").splitlines()]
    for rec in mem:
        assert mask(rec["source"]).text in got_ok, f"a faulty reply was accepted for {rec['source'][:60]!r}"
    assert m["translated_now"] == len(mem) and m["flagged_chunks"] == N_CHUNKS - len(mem) > 0
    for mode in ("commentary", "truncated", "wrong_language", "foreign_script", "placeholders", "empty"):
        assert m["rejected_attempts_by_reason"].get(mode), mode
    # No flagged conversation in a translated set; every turn says which checks it passed.
    side = {r["id"]: r for r in rows(tmp_path / "o", "side_by_side")}
    for name in ("kolima", "bilima_en_ko", "bilima_ko_en"):
        for r in rows(tmp_path / "o", name):
            assert not side[r["id"]]["flags"], (name, r["id"])
    for r in side.values():
        assert set(r["checks"]) == {str(i) for i in range(len(r["en"]))}
        for i, passed in r["checks"].items():
            assert (passed == list(CHECKS)) == (i not in r["flags"])


def test_gemini_invalid_key_fails_the_preflight_with_the_providers_message(tmp_path):
    with FakeLLMServer(valid_key="the-right-key") as srv:
        with pytest.raises(KoBLLaError) as e:
            run_translate(make_params(srv), tmp_path / "o", tmp_path / "tm", None)
        assert srv.requests == 0 and srv.gets == ["/v1/models"], "stopped before any translation request"
    msg = str(e.value)
    print(msg)  # the exact message, for docs/translate.md
    assert "HTTP 400: API key not valid. Please pass a valid API key. (INVALID_ARGUMENT, API_KEY_INVALID)" in msg
    assert f"GET {srv.base_url}/models" in msg and "'fake-model'" in msg and "KOBLLA_TEST_KEY" in msg
    assert SECRET not in msg
    assert not (tmp_path / "o").exists(), "no outputs, so DVC records nothing"


@pytest.mark.parametrize("preflight", ["off", "completion"])
def test_a_400_mid_run_stops_the_stage_at_once(tmp_path, preflight):
    with FakeLLMServer(plan=always("gemini_400")) as srv:
        with pytest.raises(KoBLLaError, match="(?s)HTTP 400: API key not valid.*KOBLLA_TEST_KEY") as e:
            run_translate(make_params(srv, openai={"preflight": preflight, "concurrency": 1}),
                          tmp_path / "o", tmp_path / "tm", None)
        assert srv.requests == 1, "no retry of a 400"
    assert SECRET not in str(e.value) and not (tmp_path / "o").exists()


def test_preflight_names_the_models_a_server_lists(tmp_path):
    with FakeLLMServer(models=["models/gemini-2.5-flash", "models/gemini-2.5-pro"]) as srv:
        with pytest.raises(KoBLLaError, match="does not list model 'fake-model'.*gemini-2.5-flash, gemini-2.5-pro"):
            run_translate(make_params(srv), tmp_path / "o", tmp_path / "tm", None)
        # Gemini lists "models/<id>"; translate.model is the bare id.
        p = make_params(srv, limit=1)
        p.model = "gemini-2.5-flash"
        assert run_translate(p, tmp_path / "o", tmp_path / "tm", None)["items_written"] == 1


def test_provider_options_reach_the_request_body(tmp_path):
    extra = {"reasoning_effort": "low", "extra_body": {"google": {"thinking_config": {"thinking_budget": 0}}}}
    with FakeLLMServer() as srv:
        p = make_params(srv, limit=1, openai={"max_tokens_param": "max_completion_tokens", "max_tokens": 777,
                                              "temperature": None, "extra_body": extra})
        run_translate(p, tmp_path / "o", tmp_path / "tm", None)
        body = srv.bodies[0]
    assert body["max_completion_tokens"] == 777 and "max_tokens" not in body and "temperature" not in body
    assert body["reasoning_effort"] == "low" and body["extra_body"] == extra["extra_body"]


def test_truncation_is_retried_with_a_larger_budget_then_flagged(tmp_path):
    # A thinking model that spends the budget on thinking: empty content, finish_reason "length".
    with FakeLLMServer(plan=sequence_for_first("thinking_empty")) as srv:
        m = run_translate(make_params(srv, openai={"concurrency": 1}), tmp_path / "o", tmp_path / "tm", None)
        first = srv.bodies[0]["messages"][-1]["content"]
        budgets = [b["max_tokens"] for b in srv.bodies if b["messages"][-1]["content"] == first]
        others = {b["max_tokens"] for b in srv.bodies if b["messages"][-1]["content"] != first}
    assert m["flagged_chunks"] == 0 and m["rejected_attempts_by_reason"] == {"truncated": 1}
    assert budgets == [4096, 8192] and others == {4096}
    with FakeLLMServer(plan=always("thinking_empty")) as srv:
        m = run_translate(make_params(srv, limit=1), tmp_path / "o2", tmp_path / "tm2", None)
        assert srv.requests == 4, "each chunk: once, once more with the larger budget, then flagged"
    assert m["failures_by_reason"] == {"truncated": 2} and rows(tmp_path / "o2", "kolima") == []


def test_each_request_carries_the_conversation_so_far(tmp_path):
    with FakeLLMServer() as srv:
        run_translate(make_params(srv, limit=1), tmp_path / "o", tmp_path / "tm", None)
        systems = {b["messages"][-1]["content"]: b["messages"][0]["content"] for b in srv.bodies}
    first = rows(tmp_path / "o", "side_by_side")[0]
    q_en, a_en = first["en"]
    q_ko = first["ko"][0]
    assert "for reference only" not in systems[mask(q_en).text]
    answer_system = systems[mask(a_en).text]
    assert q_en in answer_system and q_ko in answer_system, "the question and its accepted translation"


def test_a_long_answers_later_chunks_see_its_earlier_ones(tmp_path):
    with FakeLLMServer() as srv:
        run_translate(make_params(srv, limit=1, chunk_tokens=64), tmp_path / "o", tmp_path / "tm", None)
        bodies = list(srv.bodies)
    answer = rows(tmp_path / "o", "side_by_side")[0]["en"][1]
    chunks = [c.strip() for c, _ in split_message(answer, 64) if c.strip()]
    assert len(chunks) >= 2
    by_user = {b["messages"][-1]["content"]: b["messages"][0]["content"] for b in bodies}
    later = by_user[mask(chunks[-1]).text]
    assert chunks[0] in later, "the first chunk of the answer is context for the last"


def test_rerun_is_served_by_the_memory_with_no_request(tmp_path):
    with FakeLLMServer() as srv:
        run_translate(make_params(srv), tmp_path / "o", tmp_path / "tm", None)
        srv.reset_counts()
        m = run_translate(make_params(srv), tmp_path / "o", tmp_path / "tm", None)
        assert srv.requests == 0 and srv.gets == [], "no preflight either when nothing is missing"
    assert m["items_written"] == 14 and m["cache_hit_rate"] == 1.0


NESTED = ("Render this README snippet:\n\n````markdown\nInstall it first:\n```bash\npip install koblla\n```\n"
          "Then read the docs.\n````\n\nThe inner block stays as it is.")


def test_nested_fence_is_one_code_block():
    m = mask(NESTED)
    assert m.text == "Render this README snippet:\n\n⟦0⟧\n\nThe inner block stays as it is."
    assert m.spans[0].startswith("````markdown") and m.spans[0].endswith("\n````")
    tilde = "See:\n~~~\ncode\n```\nnot a close\n~~~~\nafter"
    assert mask(tilde).spans == ["~~~\ncode\n```\nnot a close\n~~~~"]
    assert restore(m.text, m.spans) == NESTED


def test_nested_fence_is_sent_masked_and_comes_back_byte_identical(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"conversations": ["How do I show a code block inside a code block in markdown?",
                                                 NESTED]}) + "\n", encoding="utf-8")
    with FakeLLMServer() as srv:
        m = run_translate(make_params(srv, input=str(inp)), tmp_path / "o", tmp_path / "tm", None)
        users = [b["messages"][-1]["content"] for b in srv.bodies]
    assert m["items_written"] == 1
    assert not any("Then read the docs" in u for u in users), "prose inside the code block is never translated"
    ko = rows(tmp_path / "o", "kolima")[0]["messages"][1]["content"]
    assert mask(NESTED).spans[0] in ko


def test_lima_en_is_the_source_unchanged(tmp_path):
    m = run_translate(section_params("translate"), tmp_path / "o", tmp_path / "tm", None)
    en = rows(tmp_path / "o", "lima_en")
    side = rows(tmp_path / "o", "side_by_side")
    assert m["items_written_en"] == len(en) == 14
    assert [[x["content"] for x in r["messages"]] for r in en] == [r["en"] for r in side]
    assert [x["role"] for x in en[0]["messages"]] == ["user", "assistant"] * (len(side[0]["en"]) // 2)


def test_a_memory_entry_from_a_laxer_gate_is_flagged_not_written(tmp_path):
    p = section_params("translate", seed_memory=[])
    src = "Thanks! Where can I read more about it?"
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"conversations": [src, "Start with the official tutorial."]}) + "\n")
    tm = TranslationMemory(tmp_path / "tm")
    tm.put(src, "ko", "banmal", "v1", p.model, "다음은 번역입니다: 고마워! 더 읽을 만한 데가 어디야?", "openai")
    tm.put("Start with the official tutorial.", "ko", "hapsyo", "v1", p.model, "공식 튜토리얼부터 시작하십시오.",
           "openai")
    tm.close()
    m = run_translate(section_params("translate", seed_memory=[], input=str(inp)), tmp_path / "o", tmp_path / "tm",
                      None)
    assert m["memory_entries_rejected"] == 1 and m["memory_rejected_by_reason"] == {"commentary": 1}
    assert m["items_written"] == 0 and rows(tmp_path / "o", "kolima") == []


REF = Limits.from_params(section_params("translate"))


@pytest.mark.parametrize("output,reason", [
    ("다음은 요청하신 번역입니다:\n\n파이썬에서 리스트를 정렬하려면 어떻게 해?", "commentary"),
    ("Here is the translation:\n\n파이썬에서 리스트를 정렬하려면 어떻게 해?", "commentary"),
    ("파이썬에서 리스트를 정렬하려면 어떻게 해?\n\n(참고: 자연스럽게 옮겼습니다.)", "commentary"),
    ("在Python中如何对列表进行排序而不改变原始列表呢?", "wrong_language"),
    ("Pythonでリストを元のリストを変えずに並べ替えるにはどうすればいいですか?", "wrong_language"),
    ("파이썬에서 원래 리스트는 그대로 두고 정렬하려면 어떻게 해? 这个方法很好用。", "foreign_script"),
])
def test_gate_reasons(output, reason):
    src = "How do I sort a list in Python without changing the original list?"
    assert reason in check_translation(src, output, "banmal", REF)


def test_gate_keeps_legitimate_openers_and_notes():
    src = "Sure! Here are three ways to do it.\n\nNote: all of them need Python 3.8."
    ko = "물론입니다! 세 가지 방법이 있습니다.\n\n참고: 모두 파이썬 3.8이 필요합니다."
    assert check_translation(src, ko, "hapsyo", REF) == []


def test_gate_structure_and_sentences():
    src = "First, back up the file. Then open it in an editor. Finally, save it under a new name."
    full = "먼저 파일을 백업하십시오. 그런 다음 편집기에서 여십시오. 마지막으로 새 이름으로 저장하십시오."
    assert check_translation(src, full, "hapsyo", REF) == []
    cut = "먼저 파일을 백업하십시오. 그런 다음 편집기에서 여십시오."
    assert "too_few_sentences" in check_translation(src, cut, "hapsyo", REF)
    listed = "- one item here\n- two items here\n- three items here"
    assert "list_items" in check_translation(listed, "- 항목 하나입니다\n- 항목 둘입니다", "hapsyo", REF)
    assert "headings" in check_translation("# Setup guide\n\nInstall the package first.",
                                           "설치 안내\n\n먼저 패키지를 설치하십시오.", "hapsyo", REF)
