"""Checks every translation before it is accepted: language, register, length ratio, copying, code blocks.

A failed check names a reason; the caller retries (up to translate.max_attempts) and then flags the chunk.
Reasons: empty, placeholders, wrong_language, wrong_register, too_long (answered instead of translated),
too_short (truncated), copied_source (untranslated), code_blocks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from koblla.translate.register import register_ok
from koblla.translate.segment import count_code_blocks, strip_verbatim

_HANGUL_RE = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN_RE = re.compile(r"[A-Za-z]")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*")

REASONS = ("empty", "placeholders", "wrong_language", "wrong_register", "too_long", "too_short", "copied_source",
           "code_blocks", "backend_error")


@dataclass(frozen=True)
class Limits:
    min_hangul_share: float = 0.5
    min_length_ratio: float = 0.15
    max_length_ratio: float = 2.0
    min_register_share: float = 0.8
    max_copied_share: float = 0.5

    @classmethod
    def from_params(cls, p) -> "Limits":
        return cls(p.min_hangul_share, p.min_length_ratio, p.max_length_ratio, p.min_register_share, p.max_copied_share)


def script_share(text: str, lang: str) -> float:
    """Share of letters in the target script (Hangul for ko, Latin for en) among Hangul + Latin letters."""
    h, l = len(_HANGUL_RE.findall(text)), len(_LATIN_RE.findall(text))
    if h + l == 0:
        return 1.0
    return (h if lang == "ko" else l) / (h + l)


def _letters(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def copied_share(source: str, output: str, n: int = 4) -> float:
    """Share of the source's word n-grams that appear verbatim in the output (an untranslated copy scores ~1)."""
    src = [w.lower() for w in _WORD_RE.findall(source)]
    out = " ".join(w.lower() for w in _WORD_RE.findall(output))
    if len(src) < n:
        return 0.0
    grams = {" ".join(src[i:i + n]) for i in range(len(src) - n + 1)}
    return sum(g in out for g in grams) / len(grams)


def check_translation(source: str, output: str, register: str, limits: Limits, target_lang: str = "ko") -> list[str]:
    """Reasons `output` is not an acceptable translation of `source` (empty list: accepted)."""
    if not output or not output.strip():
        return ["empty"]
    reasons: list[str] = []
    src_plain, out_plain = strip_verbatim(source), strip_verbatim(output)
    if count_code_blocks(source) != count_code_blocks(output):
        reasons.append("code_blocks")
    src_letters, out_letters = _letters(src_plain), _letters(out_plain)
    if src_letters >= 20:  # ratios of tiny strings ("Thanks!") say nothing
        ratio = out_letters / src_letters
        if ratio > limits.max_length_ratio:
            reasons.append("too_long")
        elif ratio < limits.min_length_ratio:
            reasons.append("too_short")
    if copied_share(src_plain, out_plain) > limits.max_copied_share:
        reasons.append("copied_source")
    if src_letters and script_share(out_plain, target_lang) < limits.min_hangul_share:
        reasons.append("wrong_language")
    if target_lang == "ko" and "wrong_language" not in reasons:
        ok, _ = register_ok(output, register, limits.min_register_share)
        if not ok:
            reasons.append("wrong_register")
    return reasons
