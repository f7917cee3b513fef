"""Small inputs for the finetune tests: a kowiki-style CSV, LIMA-ko chat sets, a params file, a fake model dir."""
from __future__ import annotations

import base64
import csv
import json
import random
from pathlib import Path

import yaml

from koblla.finetune.checkpoint import shard_name

REPO = Path(__file__).resolve().parents[1]

KO_SENTENCES = [
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "한강은 서울을 동서로 가로질러 흐른다.",
    "한글은 세종대왕이 백성을 위해 만든 문자이다.",
    "김치는 배추와 무에 양념을 더해 발효시킨 음식이다.",
    "부산은 대한민국 남동쪽에 있는 항구 도시이다.",
    "제주도는 화산 활동으로 만들어진 섬이다.",
    "도서관에서는 누구나 책을 빌려 읽을 수 있다.",
    "봄이 오면 산과 들에 꽃이 핀다.",
    "The river flows through the city from east to west.",
    "위키백과는 누구나 편집할 수 있는 백과사전이다.",
]


def write_kowiki(data_dir: Path, n_train: int = 60, n_dev: int = 8, seed: int = 0) -> Path:
    """data_dir/{train,dev,test}.csv with extract_wiki's columns (id,revid,url,title,text)."""
    rng = random.Random(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_dev)):
        with open(data_dir / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "revid", "url", "title", "text"])
            for i in range(n):
                text = " ".join(rng.choice(KO_SENTENCES) for _ in range(rng.randint(4, 12)))
                w.writerow([i, 1000 + i, f"https://ko.wikipedia.org/wiki?curid={i}", f"문서 {i}", text])
    return data_dir


def write_lima_ko(data_dir: Path, n: int = 8) -> Path:
    """data_dir/{kolima,bilima_en_ko,bilima_ko_en,lima_en}.jsonl (the translate stage's sets), openai-style
    `messages` (some with a system turn)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pairs = {
        "kolima": ("한국의 수도는 어디야?", "대한민국의 수도는 서울입니다."),
        "bilima_en_ko": ("What is the capital of Korea?", "대한민국의 수도는 서울입니다."),
        "bilima_ko_en": ("한국의 수도는 어디야?", "The capital of South Korea is Seoul."),
        "lima_en": ("What is the capital of Korea?", "The capital of South Korea is Seoul."),
    }
    for name, (q, a) in pairs.items():
        with open(data_dir / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i in range(n):
                msgs = [{"role": "system", "content": "당신은 친절한 도우미입니다."}] if i % 2 else []
                msgs += [{"role": "user", "content": f"{q} ({i})"}, {"role": "assistant", "content": a * (1 + i % 3)}]
                f.write(json.dumps({"id": f"{name}-{i}", "messages": msgs}, ensure_ascii=False) + "\n")
    return data_dir


def write_params(path: Path, base: dict | None = None, instruct: dict | None = None) -> Path:
    """A params file with the repo's finetune sections (plus `common`), updated by `base` / `instruct`."""
    repo = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    data = {"common": repo["common"],
            "finetune_base": {**repo["finetune_base"], **(base or {})},
            "finetune_instruct": {**repo["finetune_instruct"], **(instruct or {})}}
    data["finetune_base"]["english_eval_text"] = str(REPO / data["finetune_base"]["english_eval_text"])
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def fake_model_dir(path: Path, vocab_size: int = 128256, max_pos: int = 8192, with_tokenizer: bool = True) -> Path:
    """config.json + index (no weights) + a 256-byte tiktoken tokenizer: enough for command building and checks."""
    (path / "original").mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab_size,
              "hidden_size": 64, "intermediate_size": 224, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": max_pos, "rope_theta": 500000.0,
              "rms_norm_eps": 1e-5}
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    shards = [shard_name(1, 2), shard_name(2, 2)]
    index = {"metadata": {}, "weight_map": {"model.norm.weight": shards[1], "lm_head.weight": shards[0]}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    for s in shards:
        (path / s).write_bytes(b"")
    if with_tokenizer:
        lines = [f"{base64.b64encode(bytes([i])).decode()} {i}" for i in range(256)]
        (path / "original" / "tokenizer.model").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_merged_is_base_plus_adapter(merged_dir: Path, base_dir: Path, adapter_dir: Path) -> float:
    """Every tensor of the published merged model equals the published base + the published adapter, merged in
    float32 with alpha / rank and rounded once to the saved dtype, element for element. Returns the max abs diff
    (0.0) over all tensors, computed independently of koblla.finetune.publish."""
    from safetensors import safe_open

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM" and cfg["r"] > 0
    scale = cfg["lora_alpha"] / cfg["r"]
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        ad = {k: f.get_tensor(k) for k in f.keys()}
    base = {}
    for shard in base_dir.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            base.update({k: f.get_tensor(k) for k in f.keys()})
    merged = {}
    for shard in merged_dir.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            merged.update({k: f.get_tensor(k) for k in f.keys()})
    assert merged.keys() == base.keys()
    worst, n_lora = 0.0, 0
    for k, w in merged.items():
        a = ad.get(f"base_model.model.{k[:-len('.weight')]}.lora_A.weight")
        if a is None:
            expected = base[k].to(w.dtype)
        else:
            b = ad[f"base_model.model.{k[:-len('.weight')]}.lora_B.weight"]
            expected = (base[k].float() + (scale * b.float()) @ a.float()).to(w.dtype)
            n_lora += 1
        worst = max(worst, (w.float() - expected.float()).abs().max().item())
    assert n_lora == len([k for k in ad if k.endswith("lora_A.weight")]) and n_lora > 0
    assert worst == 0.0, f"{merged_dir}: merged weights differ from base + adapter by up to {worst}"
    return worst
