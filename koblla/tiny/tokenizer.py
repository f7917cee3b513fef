"""A real byte-level BPE in Llama 3's two tokenizer formats: tiktoken ranks and HF `tokenizer.json`.

Llama 3 ships one vocabulary twice: `original/tokenizer.model` (tiktoken: `base64(bytes) rank` per line, 128000
ranks; the 256 special tokens are supplied by code) and `tokenizer.json` (HF: the same ranks as a BPE vocab plus
merges, with the specials inside the vocab at 128000-128255). We train a small BPE on our own text, then build both
files from ONE rank table, so torchtune (tiktoken) and transformers (tokenizers) give identical ids.

The trained vocab is far smaller than 128000. Ranks between it and 128000 are filled with padding tokens that can
never be produced from text: each starts with byte 0xF8, which never occurs in UTF-8. So ids stay contiguous
(0..128255, as Meta's) and every library sees vocab size 128256, while encoding is exactly the trained BPE.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

# Llama 3's pre-tokenizer split (torchtune's CL100K_PATTERN; Meta's tokenizer.json uses the same string).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_BASE_RANKS = 128000  # Meta's tiktoken file has exactly this many ranks
PAD_PREFIX = b"\xf8\xf8"  # 0xF8 never appears in UTF-8, so padding tokens are unreachable from any text
# Llama 3's named special tokens (Meta's ids; the rest of 128000-128255 are reserved), the one home of these ids.
BOS_ID, EOS_ID, START_HEADER_ID, END_HEADER_ID, EOT_ID = 128000, 128001, 128006, 128007, 128009
# The chat-format tokens base Llama 3 never trained (the rows chat_vector.special_token_ids copies from instruct).
CHAT_TOKEN_IDS = (START_HEADER_ID, END_HEADER_ID, EOT_ID)


def llama3_special_tokens() -> dict[str, int]:
    """Meta-Llama-3's 256 special tokens (names as in Meta's tokenizer.json for Llama 3, not 3.1)."""
    named = {
        BOS_ID: "<|begin_of_text|>",
        EOS_ID: "<|end_of_text|>",
        START_HEADER_ID: "<|start_header_id|>",
        END_HEADER_ID: "<|end_header_id|>",
        EOT_ID: "<|eot_id|>",
    }
    out, reserved = {}, 0
    for i in range(NUM_BASE_RANKS, NUM_BASE_RANKS + 256):
        if i in named:
            out[named[i]] = i
        else:
            out[f"<|reserved_special_token_{reserved}|>"] = i
            reserved += 1
    return out


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which ByteLevel uses for vocab strings."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


_B2U = bytes_to_unicode()
_U2B = {u: b for b, u in _B2U.items()}


def token_str(token: bytes) -> str:
    return "".join(_B2U[b] for b in token)


def token_bytes(s: str) -> bytes:
    return bytes(_U2B[c] for c in s)


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )


def train_ranks(texts: Iterable[str], vocab_size: int, min_frequency: int) -> dict[bytes, int]:
    """Train a byte-level BPE; return tiktoken ranks: the 256 bytes first (in byte order), then merges in order."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    trained = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    ranks = {bytes([b]): b for b in range(256)}
    for s, _ in trained:
        t = token_bytes(s)
        if t not in ranks:
            ranks[t] = len(ranks)
    return ranks


def pad_ranks(ranks: dict[bytes, int]) -> dict[bytes, int]:
    """Fill ranks up to NUM_BASE_RANKS with unreachable tokens so ids are contiguous, as in Meta's file."""
    assert len(ranks) <= NUM_BASE_RANKS, f"trained vocab {len(ranks)} exceeds {NUM_BASE_RANKS}"
    assert sorted(ranks.values()) == list(range(len(ranks))), "trained ranks must be contiguous"
    out = dict(ranks)
    for i in range(len(ranks), NUM_BASE_RANKS):
        out[PAD_PREFIX + f"unused_{i:06d}".encode()] = i
    return out


def is_padding(token: bytes) -> bool:
    return token.startswith(PAD_PREFIX)


def write_tiktoken(path: Path, ranks: dict[bytes, int]) -> None:
    lines = [f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1])]
    path.write_text("".join(lines), encoding="utf-8", newline="\n")


def _merges(ranks: dict[bytes, int]) -> list[tuple[str, str]]:
    """Every split of every token whose two parts are tokens, ordered by the merged token's rank (as
    transformers' TikTokenConverter does), so HF's BPE reproduces tiktoken's rank-driven merging."""
    merges = []
    for token, rank in ranks.items():
        if len(token) == 1 or is_padding(token):
            continue
        local = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in ranks and token[i:] in ranks]
        local.sort(key=lambda lr: (ranks[lr[0]], ranks[lr[1]]))
        merges.extend((rank, left, right) for left, right in local)
    merges.sort(key=lambda m: m[0])  # stable: ties keep the (left rank, right rank) order
    return [(token_str(left), token_str(right)) for _, left, right in merges]


def build_hf_tokenizer(ranks: dict[bytes, int]) -> Tokenizer:
    """The HF fast tokenizer equal to tiktoken on `ranks` + Llama 3's specials (inside the vocab)."""
    specials = llama3_special_tokens()
    vocab = {token_str(t): r for t, r in ranks.items()}
    vocab.update(specials)
    bpe = models.BPE(vocab=vocab, merges=_merges(ranks), ignore_merges=True, fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                special_tokens=[("<|begin_of_text|>", specials["<|begin_of_text|>"])],
            ),
        ]
    )
    tok.add_special_tokens(
        [AddedToken(name, special=True, normalized=False, lstrip=False, rstrip=False) for name in specials]
    )
    return tok


# Meta-Llama-3-8B-Instruct's chat template, verbatim.
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
    "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def _special(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}


def write_tokenizer_files(out_dir: Path, ranks: dict[bytes, int], tokenizer: Tokenizer, instruct: bool) -> None:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json and original/tokenizer.model."""
    eos = "<|eot_id|>" if instruct else "<|end_of_text|>"
    (out_dir / "original").mkdir(parents=True, exist_ok=True)
    write_tiktoken(out_dir / "original" / "tokenizer.model", ranks)
    # Tokenizer.to_str is deterministic (vocab sorted by id); indent keeps diffs readable like Meta's file.
    (out_dir / "tokenizer.json").write_text(
        json.dumps(json.loads(tokenizer.to_str()), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    config = {
        "added_tokens_decoder": {
            str(i): {**_special(name), "special": True} for name, i in llama3_special_tokens().items()
        },
        "bos_token": "<|begin_of_text|>",
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 1000000000000000019884624838656,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if instruct:
        config["chat_template"] = CHAT_TEMPLATE
    _dump(out_dir / "tokenizer_config.json", config)
    _dump(out_dir / "special_tokens_map.json", {"bos_token": _special("<|begin_of_text|>"), "eos_token": _special(eos)})


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
