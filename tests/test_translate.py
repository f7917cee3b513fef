"""translate stage on the embedded default (memory backend): masking, splitting, register, validation, memory,
input errors, outputs (read back by torchtune's chat_dataset), metrics."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from params_helpers import section_params

from koblla.errors import InputError, KoBLLaError
from koblla.text.register import classify_formality, count_registers, register_ok
from koblla.text.verbatim import FENCE_RE, PlaceholderError, mask, restore
from koblla.translate import run_translate
from koblla.translate.inputs import read_conversations
from koblla.translate.memory import TranslationMemory, memory_key
from koblla.translate.segment import split_message
from koblla.translate.validate import Limits, check_translation

SAMPLE = "assets/lima/lima_sample.jsonl"


@pytest.fixture
def params(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    return section_params("translate")


# ---- faithfulness ------------------------------------------------------------------------------------------------
def test_mask_restore_roundtrip_keeps_code_urls_latex():
    text = (
        "Run `pip install x` (docs: https://example.org/a_(b)). Price $5 and $10, math $x^2$ and\n\n"
        "$$\\sum_{k=1}^n k$$\n\n```python\nprint('https://not.a.link')\n```\nDone."
    )
    m = mask(text)
    assert "https" not in m.text and "pip" not in m.text and "sum" not in m.text and "print" not in m.text
    assert "$5 and $10" in m.text  # prices are not LaTeX
    assert m.spans[0] == "`pip install x`" and m.spans[1] == "https://example.org/a_(b)"
    assert restore(m.text, m.spans) == text
    with pytest.raises(PlaceholderError):
        restore(m.text.replace("⟦1⟧", ""), m.spans)
    with pytest.raises(PlaceholderError):
        restore(m.text + " ⟦0⟧", m.spans)


def test_split_message_is_lossless_and_respects_code_blocks():
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(40)) + "\n```"
    paras = [f"Paragraph {i}. " + "Some words here to fill space. " * 8 for i in range(6)]
    text = "\n\n".join(paras[:3] + [code] + paras[3:])
    chunks = split_message(text, budget_tokens=150)
    assert "".join(c + s for c, s in chunks) == text
    assert len(chunks) > 2
    assert any(c.strip() == code for c, _ in chunks), "a code block is never cut"
    assert all(len(FENCE_RE.findall(c)) in (0, 1) for c, _ in chunks)
    assert split_message("short", 150) == [("short", "")]


# ---- register ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,label", [
    ("이 함수는 리스트를 반환합니다.", "hapsyo"),
    ("설치하십시오.", "hapsyo"),
    ("고양이를 6마리나요? 키우는 거 안 힘드세요?", "haeyo"),
    ("좋네요.", "haeyo"),
    ("이거 어떻게 해야 돼?", "banmal"),
    ("파이썬으로 정렬하는 법 알려 줘.", "banmal"),
    ("같이 가자.", "banmal"),
])
def test_register_labels(text, label):
    c = count_registers(text)
    assert c.sentences[label] >= 1 and c.evidenced == c.sentences[label], dict(c.sentences)


def test_register_ignores_quotes_code_and_blockquotes():
    text = '사용자가 "이거 해 줘"라고 말하면 다음 명령을 실행합니다.\n\n> 비가 온다.\n\n```\necho 안녕\n```'
    c = count_registers(text)
    assert c.sentences["hapsyo"] == 1 and c.sentences["banmal"] == 0
    assert register_ok(text, "hapsyo", 0.8)[0] and not register_ok(text, "banmal", 0.8)[0]


def test_register_module_loads_no_translate_pipeline(repo_root):
    """evaluate imports the register classifier; that must not pull in the translate stage and its backends."""
    code = ("import sys, koblla.text.register; "
            "print(sorted(m for m in sys.modules if m.startswith('koblla.translate')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_classify_formality():
    assert classify_formality("안녕하세요. 저는 고양이 6마리 키워요.") == "formal"
    assert classify_formality("안녕! 나는 고양이 6마리 키워.") == "informal"
    assert classify_formality("진짜?") == "informal"


def test_check_translation_reasons():
    limits = Limits.from_params(section_params("translate"))
    src = "How do I sort a list of numbers in Python without changing the original list?"
    good = "파이썬에서 원래 리스트는 바꾸지 않고 숫자 리스트를 정렬하려면 어떻게 해?"
    assert check_translation(src, good, "banmal", limits) == []
    formal = "원래 리스트를 바꾸지 않고 정렬하는 방법은 무엇입니까?"
    assert "wrong_register" in check_translation(src, formal, "banmal", limits)
    assert "wrong_language" in check_translation(src, src, "banmal", limits)
    assert "copied_source" in check_translation(src, src, "banmal", limits)
    assert "too_long" in check_translation(src, "정렬하려면 sorted 함수를 쓰면 돼. " * 20, "banmal", limits)
    assert "too_short" in check_translation(src + " " + src, "정렬해.", "banmal", limits)
    assert check_translation(src, "  ", "banmal", limits) == ["empty"]
    assert "code_blocks" in check_translation("Use:\n```\nls\n```", "이렇게 써.", "banmal", limits)


# ---- memory ------------------------------------------------------------------------------------------------------
def test_memory_append_resume_torn_line_and_duplicates(tmp_path):
    d = tmp_path / "tm"
    mem = TranslationMemory(d)
    k = mem.put("Hello there, friend.", "ko", "banmal", "v1", "m", "안녕, 친구.", "test")
    mem.put("Hello there, friend.", "ko", "banmal", "v1", "m", "다른 번역.", "test")  # same key: ignored
    mem.close()
    assert k == memory_key("Hello there, friend.", "ko", "banmal", "v1", "m")
    assert k != memory_key("Hello there, friend.", "ko", "banmal", "v1", "other-model")
    lines = (d / "memory.jsonl").read_text().splitlines()
    assert len(lines) == 1
    # A crash mid-write leaves a torn last line; the next open cuts it and appends cleanly.
    with open(d / "memory.jsonl", "a", encoding="utf-8") as f:
        f.write(lines[0] + "\n" + lines[0][:25])
    mem = TranslationMemory(d)
    assert mem.get(k) == "안녕, 친구." and len(mem) == 1  # the duplicate line counts once
    mem.put("Bye.", "ko", "banmal", "v1", "m", "잘 가.", "test")
    mem.close()
    recs = [json.loads(x) for x in (d / "memory.jsonl").read_text().splitlines()]
    assert [r["source"] for r in recs] == ["Hello there, friend.", "Hello there, friend.", "Bye."]


def test_bad_memory_record_names_file_and_line(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"source": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"seed.jsonl:1"):
        TranslationMemory(tmp_path / "tm", [seed])


# ---- inputs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line,reason", [
    ("{not json", "not valid JSON"),
    ('{"conversations": [], "source": "x"}', "empty conversation"),
    ('{"conversations": ["a", "b", "c"], "source": "x"}', "3 turns"),
    ('{"conversations": ["a", 5], "source": "x"}', "turn 1 is int"),
    ('{"source": "x"}', "missing field 'conversations'"),
])
def test_bad_records_error_with_line_number_or_counted_skip(tmp_path, line, reason):
    f = tmp_path / "in.jsonl"
    good = json.dumps({"conversations": ["Hi, how are you?", "I am fine, thank you."], "source": "t"})
    f.write_text(f"{good}\n{line}\n{good}\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"in.jsonl:2: .*{reason}.*on_bad_record"):
        read_conversations(section_params("translate", input=str(f)))
    convs, report = read_conversations(section_params("translate", input=str(f)), on_bad="skip")
    assert len(convs) == 2 and report.skipped == 1 and [c.id for c in convs] == ["lima_0", "lima_2"]


def test_instruction_response_input(tmp_path):
    f = tmp_path / "flat.jsonl"
    f.write_text(json.dumps({"instruction": "Say hi.", "response": "Hi!"}) + "\n", encoding="utf-8")
    convs, _ = read_conversations(section_params("translate", input=str(f), input_format="instruction_response"))
    assert convs[0].turns == ("Say hi.", "Hi!")


def test_hf_input_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="HF_TOKEN"):
        read_conversations(section_params("translate", input_format="hf", hf_dataset="GAIR/lima"))


def test_sample_schema(params):
    convs, report = read_conversations(params)
    assert len(convs) >= 12 and report.skipped == 0
    assert sum(len(c.turns) > 2 for c in convs) >= 3
    text = "\n".join(t for c in convs for t in c.turns)
    for needle in ("```", "`", "https://", "$$", "## ", "- ", "1. "):
        assert needle in text, needle


# ---- the stage on the embedded default ---------------------------------------------------------------------------
def test_default_run_writes_datasets_and_metrics(params, tmp_path):
    params.system_prompt = "너는 친절한 한국어 도우미야."
    m = run_translate(params, tmp_path / "lima_ko", tmp_path / "tm", tmp_path / "metrics.json")
    assert m["items"] == m["items_written"] == 14 and m["cache_hit_rate"] == 1.0 and m["requests"] == 0
    assert m["register_compliance_user_pct"] == 100.0 and m["register_compliance_assistant_pct"] == 100.0
    assert json.loads((tmp_path / "metrics.json").read_text())["turns"] == m["turns"]
    rows = {n: [json.loads(x) for x in (tmp_path / "lima_ko" / f"{n}.jsonl").read_text().splitlines()]
            for n in ("kolima", "bilima_en_ko", "bilima_ko_en", "side_by_side")}
    side = rows["side_by_side"][0]
    ko, en, ko_en = (rows[n][0]["messages"] for n in ("kolima", "bilima_en_ko", "bilima_ko_en"))
    assert ko[0] == {"role": "system", "content": "너는 친절한 한국어 도우미야."}
    assert [x["content"] for x in ko[1:]] == side["ko"]
    assert [x["content"] for x in en[1:]] == [side["en"][0], side["ko"][1]]
    assert [x["content"] for x in ko_en[1:]] == [side["ko"][0], side["en"][1]]
    # Code comes back verbatim.
    assert "list(dict.fromkeys(items))" in ko[2]["content"]


def test_outputs_load_with_torchtune_chat_dataset(params, tmp_path):
    run_translate(params, tmp_path / "lima_ko", tmp_path / "tm", None)
    from torchtune.data import Message  # noqa: F401  (torchtune imports cleanly)
    from torchtune.datasets import chat_dataset

    class CharTokenizer:  # a minimal ModelTokenizer: chat_dataset only needs tokenize_messages
        max_seq_len = None

        def tokenize_messages(self, messages, add_eos=True):
            toks, mask_ = [], []
            for msg in messages:
                ids = [ord(ch) % 1000 for ch in "".join(c["content"] for c in msg.content if c["type"] == "text")]
                toks += ids
                mask_ += [msg.masked] * len(ids)
            return toks, mask_

        def __call__(self, sample, inference=False):
            tokens, mask_ = self.tokenize_messages(sample["messages"])
            sample.update(tokens=tokens, mask=mask_)
            return sample

    for name in ("kolima", "bilima_en_ko", "bilima_ko_en"):
        ds = chat_dataset(tokenizer=CharTokenizer(), source="json",
                          data_files=str(tmp_path / "lima_ko" / f"{name}.jsonl"), split="train",
                          conversation_column="messages", conversation_style="openai", train_on_input=False)
        assert len(ds) == 14
        assert len(ds[0]["tokens"]) > 0


def test_haeyo_variant_served_offline(params, tmp_path):
    params.assistant_register = "haeyo"  # the shipped memory has 해요체 variants of every assistant turn
    m = run_translate(params, tmp_path / "lima_ko", tmp_path / "tm", None)
    assert m["items_written"] == 14 and m["register_compliance_assistant_pct"] == 100.0
    kolima = [json.loads(x) for x in (tmp_path / "lima_ko" / "kolima.jsonl").read_text().splitlines()]
    assert kolima[0]["messages"][1]["content"].endswith("사용해야 해요.")


def test_memory_misses_fail_with_list_and_how_to(params, tmp_path):
    params.model = "gemini-2.5-flash"  # memory keys include the model: the reference translations do not match
    with pytest.raises(KoBLLaError) as e:
        run_translate(params, tmp_path / "out", tmp_path / "tm", None)
    msg = str(e.value)
    assert "36 chunk(s) are not in the translation memory" in msg and "lima_0 turn 1 [hapsyo]" in msg
    assert "translate.backend: openai" in msg and "api_key_env" in msg
    assert not (tmp_path / "out").exists(), "no half-written outputs"


def test_stage_cli_runs_default(repo_root, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "stages.translate", "--out-dir", str(tmp_path / "o"), "--memory", str(tmp_path / "tm"),
         "--metrics", str(tmp_path / "m.json")], cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "14 written" in out.stdout
    assert (tmp_path / "tm" / "memory.jsonl").is_file()


def test_stage_cli_bad_input_exit_2(repo_root, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": ["only one turn"]}\n', encoding="utf-8")
    params = tmp_path / "params.yaml"
    import yaml

    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["translate"]["input"] = str(bad)
    params.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "stages.translate", "--params", str(params), "--out-dir", str(tmp_path / "o"),
         "--memory", str(tmp_path / "tm")], cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2 and "bad.jsonl:1" in out.stderr and "user/assistant pairs" in out.stderr


def test_memory_never_appends_through_a_dvc_cache_link(tmp_path):
    """DVC checks a persistent out out as a hardlink into its cache: appending must not change the cache object."""
    import os

    from koblla.translate.memory import MEMORY_FILE, TranslationMemory

    mem_dir = tmp_path / "translation_memory"
    mem = TranslationMemory(mem_dir)
    mem.put("Hello", "ko", "banmal", "v1", "m", "안녕", backend="test")
    mem.close()
    cache_obj = tmp_path / "cache_object"
    os.link(mem_dir / MEMORY_FILE, cache_obj)
    before = cache_obj.read_bytes()
    mem = TranslationMemory(mem_dir)
    mem.put("Bye", "ko", "banmal", "v1", "m", "잘 가", backend="test")
    mem.close()
    assert cache_obj.read_bytes() == before
    assert len(TranslationMemory(mem_dir)) == 2
