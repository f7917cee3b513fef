"""Tiny Llama-3 stand-ins: `tune download` layout, one tokenizer in two formats, loadable by torchtune,
transformers and lm-eval with no special case, a real instruct run, byte-identical rebuilds."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_make_tiny_models
from params_helpers import section_params, section_values

from koblla.tiny import build_base_model, build_tiny_checkpoints, read_corpus
from koblla.tiny.params import TinyModelsParams
from koblla.tiny.tokenizer import CHAT_TOKEN_IDS, NUM_BASE_RANKS, PAD_PREFIX, llama3_special_tokens

LAYOUT = [
    "config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
    "model.safetensors.index.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
    "original_repo_id.json", "original/params.json", "original/tokenizer.model", "original/consolidated.00.pth",
    "README.md", "LICENSE",
]
SHARDS = LAYOUT[2:4]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def tokenizers(tiny_checkpoints):
    from torchtune.models.llama3 import llama3_tokenizer
    from transformers import AutoTokenizer

    base, instruct = tiny_checkpoints
    return (AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(instruct),
            llama3_tokenizer(str(base / "original" / "tokenizer.model")))


def _random_strings(n: int, seed: int = 0) -> list[str]:
    """Korean syllables and jamo, English, digits, punctuation, emoji and odd whitespace, mixed."""
    rng = random.Random(seed)
    pools = [
        [chr(c) for c in range(0xAC00, 0xD7A4)],  # Hangul syllables
        [chr(c) for c in range(0x3131, 0x3164)],  # compatibility jamo
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        list("0123456789"),
        list(".,!?;:'\"()[]{}<>-_/\\@#$%^&*+=~`|'s've'll"),
        ["😀", "🎉", "👍🏽", "🇰🇷", "❤️", "漢", "字", "é", "ß", "ñ"],
        [" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u3000"],
    ]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            pool = rng.choice(pools)
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        out.append("".join(parts))
    return out


FIXED = [
    "안녕하세요, 반갑습니다!", "밥 먹었어?", "서울은 한강이 흐르는 도시이다.", "Hello, world!", "I'm fine, you'll see.",
    "  leading and trailing  ", "\n\nnew lines\n", "숫자 1234567 and 3.14159", "이모지 😀🎉 emoji", "tab\there",
    "KoBLLa는 Llama 3를 한국어로 fine-tuning합니다.", "ㅋㅋㅋㅋ ㅎㅎ", "a", " ", "\u00a0non-breaking", "x" * 300,
]


def _agree(hf, tt, texts):
    for s in texts:
        ours = hf(s, add_special_tokens=False)["input_ids"]
        assert ours == tt.encode(s, add_bos=False, add_eos=False), f"tokenizers disagree on {s!r}"
        assert hf(s)["input_ids"] == tt.encode(s, add_bos=True, add_eos=False), f"bos handling differs on {s!r}"
        assert hf.decode(ours) == s == tt.decode(ours, skip_special_tokens=False), f"decode does not round-trip {s!r}"


def test_layout_matches_tune_download(tiny_checkpoints):
    for root, instruct in zip(tiny_checkpoints, (False, True), strict=True):
        missing = [f for f in LAYOUT if not (root / f).is_file()]
        assert not missing, f"{root} lacks {missing}"
        cfg = json.loads((root / "config.json").read_text())
        assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["vocab_size"] == 128256
        assert (cfg["rope_theta"], cfg["bos_token_id"], cfg["torch_dtype"], cfg["tie_word_embeddings"]) == (
            500000.0, 128000, "bfloat16", False)
        assert cfg["eos_token_id"] == (128009 if instruct else 128001)
        gen = json.loads((root / "generation_config.json").read_text())
        assert gen["eos_token_id"] == ([128001, 128009] if instruct else 128001)
        repo = json.loads((root / "original_repo_id.json").read_text())["repo_id"]
        assert repo == "meta-llama/Meta-Llama-3-8B" + ("-Instruct" if instruct else "")
        tok_cfg = json.loads((root / "tokenizer_config.json").read_text())
        assert tok_cfg["clean_up_tokenization_spaces"] is False
        assert ("chat_template" in tok_cfg) == instruct
        assert "stand-in" in (root / "README.md").read_text()
        index = json.loads((root / "model.safetensors.index.json").read_text())
        assert sorted(set(index["weight_map"].values())) == SHARDS
        from safetensors import safe_open

        total, keys = 0, set()
        for shard in SHARDS:
            with safe_open(root / shard, "pt") as f:
                for k in f.keys():
                    t = f.get_tensor(k)
                    assert t.dtype == torch.bfloat16, f"{shard}:{k} is {t.dtype}"
                    total += t.numel() * t.element_size()
                    keys.add(k)
        assert keys == set(index["weight_map"]) and total == index["metadata"]["total_size"]


def test_meta_consolidated_matches_hf_shards(tiny_checkpoints):
    from torchtune.models.convert_weights import meta_to_tune
    from torchtune.training import FullModelHFCheckpointer

    base = tiny_checkpoints[0]
    meta = torch.load(base / "original" / "consolidated.00.pth", weights_only=True, map_location="cpu")
    params = json.loads((base / "original" / "params.json").read_text())
    assert params["vocab_size"] == 128256 and params["rope_theta"] == 500000.0
    # Meta's FFN width formula must give config.json's intermediate_size.
    hidden = int(params["ffn_dim_multiplier"] * int(8 * params["dim"] / 3))
    m = params["multiple_of"]
    assert m * ((hidden + m - 1) // m) == json.loads((base / "config.json").read_text())["intermediate_size"]
    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(base), checkpoint_files=SHARDS, model_type="LLAMA3",
                                   output_dir=str(base.parent / "tt_out_meta"))
    hf_sd = ckpt.load_checkpoint()["model"]
    meta_sd = meta_to_tune(meta)
    assert meta_sd.keys() == hf_sd.keys()
    for k in hf_sd:
        assert torch.equal(meta_sd[k], hf_sd[k]), f"{k}: original/consolidated.00.pth differs from the HF shards"


def test_torchtune_and_transformers_agree_on_logits(tiny_checkpoints, tokenizers):
    from torchtune.models.llama3 import llama3
    from torchtune.training import FullModelHFCheckpointer
    from transformers import AutoModelForCausalLM

    base = tiny_checkpoints[0]
    cfg = json.loads((base / "config.json").read_text())
    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(base), checkpoint_files=SHARDS, model_type="LLAMA3",
                                   output_dir=str(base.parent / "tt_out_logits"))
    tt_model = llama3(vocab_size=cfg["vocab_size"], num_layers=cfg["num_hidden_layers"],
                      num_heads=cfg["num_attention_heads"], num_kv_heads=cfg["num_key_value_heads"],
                      embed_dim=cfg["hidden_size"], intermediate_dim=cfg["intermediate_size"], max_seq_len=8192,
                      rope_base=int(cfg["rope_theta"]), norm_eps=cfg["rms_norm_eps"])
    tt_model.load_state_dict({k: v.float() for k, v in ckpt.load_checkpoint()["model"].items()})
    hf_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizers[0]("서울은 한강이 흐르는 도시이다. The river runs through town.")["input_ids"]])
    with torch.no_grad():
        diff = (tt_model.eval()(ids) - hf_model(ids).logits).abs().max().item()
    assert diff < 1e-4, f"torchtune and transformers logits differ by {diff}"


def test_tokenizers_agree_on_many_strings(tokenizers):
    hf, _, tt = tokenizers
    _agree(hf, tt, FIXED + _random_strings(1500))


def test_tokenizers_agree_on_real_korean_text(tokenizers, shared_data):
    """Real Korean (Wikipedia, spoken styles, KoBEST): nothing like our training text, so unmerged bytes too."""
    hf, _, tt = tokenizers
    files = ["kowiki_wikiextractor_text/AA/wiki_00", "korean_smile_style/smilestyle_dataset.tsv",
             "nikl2021_kobest_subset/SKT_BoolQ_Dev.tsv"]
    texts = []
    for name in files:
        path = shared_data / name
        if path.is_file():
            texts += [line for line in path.read_text(encoding="utf-8").splitlines()[:800] if line.strip()]
    if not texts:
        pytest.skip(f"none of {files} under {shared_data}")
    _agree(hf, tt, texts)


def test_empty_string_is_the_known_difference(tokenizers):
    hf, _, tt = tokenizers
    assert hf("")["input_ids"] == [128000] and tt.encode("", add_bos=True, add_eos=False) == []


def test_vocab_is_contiguous_and_padding_unreachable(tiny_checkpoints, tokenizers):
    hf, _, tt = tokenizers
    base = tiny_checkpoints[0]
    lines = (base / "original" / "tokenizer.model").read_text().splitlines()
    ranks = {base64.b64decode(t): int(r) for t, r in (line.split() for line in lines)}
    assert sorted(ranks.values()) == list(range(NUM_BASE_RANKS)), "tiktoken ranks must be 0..127999"
    trained = sum(not t.startswith(PAD_PREFIX) for t in ranks)
    assert 256 < trained < NUM_BASE_RANKS
    assert len(hf) == 128256 == tt.base_vocab_size + 256
    assert sorted(hf.get_vocab().values()) == list(range(128256))
    corpus = read_corpus()
    for text in corpus + FIXED + _random_strings(300, seed=1):
        assert max(hf(text, add_special_tokens=False)["input_ids"] or [0]) < trained, f"padding reached on {text!r}"
    # the learnt merges are real: Korean (3 UTF-8 bytes a syllable) takes ~0.47 tokens per byte, not 1
    ko = "\n\n".join(t for t in corpus if any("\uac00" <= c <= "\ud7a3" for c in t))
    assert len(tt.encode(ko, add_bos=False, add_eos=False)) < 0.6 * len(ko.encode())


def test_special_tokens_are_llama3s(tokenizers):
    hf, hf_inst, tt = tokenizers
    specials = llama3_special_tokens()
    assert len(specials) == 256 and set(specials.values()) == set(range(128000, 128256))
    for name in ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]:
        assert hf.convert_tokens_to_ids(name) == specials[name] == tt.special_tokens[name]
    assert specials["<|reserved_special_token_0|>"] == 128002 and specials["<|reserved_special_token_250|>"] == 128255
    assert hf.convert_tokens_to_ids("<|reserved_special_token_4|>") == 128008
    assert hf("<|eot_id|>", add_special_tokens=False)["input_ids"] == [128009]
    assert (hf.bos_token_id, hf.eos_token_id, hf_inst.eos_token_id) == (128000, 128001, 128009)


def test_chat_format_agrees_with_torchtune(tokenizers):
    from torchtune.data import Message

    _, hf, tt = tokenizers
    chats = [
        [{"role": "user", "content": "안녕? 오늘 날씨 어때?"}, {"role": "assistant", "content": "맑고 따뜻합니다."}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}, {"role": "user", "content": " 고마워 "},
         {"role": "assistant", "content": "천만에요! 😀"}],
    ]
    for msgs in chats:
        ours = hf.apply_chat_template(msgs, tokenize=True, return_dict=False)
        theirs, _ = tt.tokenize_messages([Message(role=m["role"], content=m["content"]) for m in msgs])
        # known end difference: torchtune appends <|end_of_text|> after the final <|eot_id|>
        assert theirs == ours + [128001]
        prompt = hf.apply_chat_template(msgs[:-1], tokenize=True, add_generation_prompt=True, return_dict=False)
        tt_prompt, _ = tt.tokenize_messages(
            [Message(role=m["role"], content=m["content"]) for m in msgs[:-1]]
            + [Message(role="assistant", content="")],
            add_end_tokens=False,
        )
        assert tt_prompt == prompt


def test_instruct_differs_from_base_by_training(tiny_checkpoints, tokenizers):
    from safetensors.torch import load_file

    base, instruct = ({} for _ in range(2))
    for sd, root in zip((base, instruct), tiny_checkpoints, strict=True):
        for shard in SHARDS:
            sd.update(load_file(root / shard))
    assert base.keys() == instruct.keys()
    changed = [k for k in base if not torch.equal(base[k], instruct[k])]
    assert len(changed) == len(base), f"only {len(changed)}/{len(base)} tensors changed"
    emb = "model.embed_tokens.weight"
    rows_changed = (base[emb] != instruct[emb]).any(dim=1)
    # chat special tokens were trained; padding rows (never seen) are exactly the base's
    assert rows_changed[list(CHAT_TOKEN_IDS)].all()
    assert not rows_changed[100000:128000].any()


def test_models_load_and_generate(tiny_checkpoints):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    instruct = tiny_checkpoints[1]
    tok = AutoTokenizer.from_pretrained(instruct)
    model = AutoModelForCausalLM.from_pretrained(instruct)
    assert model.dtype == torch.bfloat16
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_params_check_head_counts():
    assert isinstance(section_params("tiny_models"), TinyModelsParams)
    with pytest.raises(ValueError, match="num_kv_heads"):
        TinyModelsParams(**section_values("tiny_models", num_heads=4, num_kv_heads=3))


def test_tokenizer_files_are_byte_identical(tmp_path, tiny_checkpoints):
    """The BPE trainer is multi-threaded: retraining must still give the fixture's exact files."""
    from koblla.tiny import tokenizer

    params = section_params("tiny_models")
    ranks = tokenizer.pad_ranks(tokenizer.train_ranks(read_corpus(), params.bpe_vocab_size, params.bpe_min_frequency))
    tokenizer.write_tokenizer_files(tmp_path, ranks, tokenizer.build_hf_tokenizer(ranks), instruct=True)
    theirs = _hashes(tiny_checkpoints[1])
    ours = _hashes(tmp_path)
    assert ours == {k: theirs[k] for k in ours}


@pytest.mark.slow
def test_rebuild_is_byte_identical(tmp_path):
    params = section_params("tiny_models", instruct_steps=2, pretrain_steps=3)  # both training loops, in a few steps
    for run in ("a", "b"):
        build_tiny_checkpoints(tmp_path / run / "base", tmp_path / run / "inst", params, seed=7)
    for sub in ("base", "inst"):
        a, b = _hashes(tmp_path / "a" / sub), _hashes(tmp_path / "b" / sub)
        assert a.keys() == set(LAYOUT) and a == b
    assert _hashes(tmp_path / "a" / "base") != _hashes(tmp_path / "a" / "inst")
    # the seed matters
    w7, w8 = (build_base_model(params, seed).tok_embeddings.weight for seed in (7, 8))
    assert not torch.equal(w7, w8)


def test_stage_output_matches_the_committed_lock(tiny_checkpoints, default_pipeline, repo_root):
    """The make_tiny_models stage, run in a fresh copy of the repo (what `tiny_checkpoints` are), writes the very
    bytes whose hashes the committed dvc.lock holds (built on another clone): what keeps dvc.lock stable across
    reruns and machines."""
    ours, committed = (yaml.safe_load(lock.read_text(encoding="utf-8"))["stages"]["make_tiny_models"]
                       for lock in (default_pipeline.tiny_lock, repo_root / "dvc.lock"))
    assert ours["outs"] == committed["outs"], (
        "make_tiny_models wrote other bytes than the committed dvc.lock records: if its code, inputs or params "
        "changed, run `make repro` and commit dvc.lock; otherwise the build is not deterministic")


def test_base_knows_some_english(tiny_checkpoints, repo_root):
    """The pretrained base predicts held-out English (never trained on) far better than its random init."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = (repo_root / "assets/eval_text/english_heldout.txt").read_text(encoding="utf-8").split("\n\n")[0]
    tok = AutoTokenizer.from_pretrained(tiny_checkpoints[0])
    ids = torch.tensor([tok(text)["input_ids"]])
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoints[0], dtype=torch.float32)
    with torch.no_grad():
        trained = F.cross_entropy(model(ids).logits[0, :-1], ids[0, 1:]).item()
        random_init = build_base_model(section_params("tiny_models"), seed=42)
        rand = F.cross_entropy(random_init(ids)[0, :-1], ids[0, 1:]).item()
    assert trained < 0.6 * rand, (trained, rand)


@pytest.mark.slow
def test_lm_eval_loads_base(tiny_checkpoints):
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(tiny_checkpoints[0]), device="cpu", batch_size=1, dtype="float32")

    class Req:  # the only attribute loglikelihood reads
        args = ("서울은", " 도시이다.")

    (logprob, _), = lm.loglikelihood([Req()])
    assert logprob < 0


def test_stage_help(repo_root):
    out = subprocess.run([sys.executable, "-m", "stages.make_tiny_models", "--help"], cwd=repo_root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("python -m stages.make_tiny_models --base-out") == 1


@pytest.mark.slow
def test_stage_runs(tmp_path):
    params = tmp_path / "params.yaml"
    tiny = section_values("tiny_models", instruct_steps=2, pretrain_steps=2)
    params.write_text(yaml.safe_dump({"common": {"seed": 3}, "tiny_models": tiny}))
    out = run_make_tiny_models(params, tmp_path / "b", tmp_path / "i")
    assert out.returncode == 0, out.stderr
    assert "vocab size 128256" in out.stdout and "2 steps" in out.stdout
    assert (tmp_path / "i" / "tokenizer_config.json").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tiny_models": section_values("tiny_models", num_layerz=2)}))
    out = run_make_tiny_models(bad, Path("x"), Path("y"), timeout=120)
    assert out.returncode == 2 and "num_layerz" in out.stderr
