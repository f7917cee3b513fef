"""The quality gate: checks every translation before it is accepted.

A failed check names a reason; the caller retries (up to translate.max_attempts) and then flags the chunk, which
keeps its conversation out of every output file. Each bound is a param (translate.* in params.yaml) whose value
was set from our reference translations (assets/lima/sample.yaml, docs/translate.md "Quality gate").

Checks, in order (CHECKS; a reply's reasons are the names of the checks it failed):
- empty: no text; truncated: the reply hit the output budget (finish_reason "length", set by the backend)
- placeholders: ⟦n⟧ lost, duplicated, invented or out of order (code, URLs, LaTeX come back in order, verbatim)
- code_blocks: fenced blocks not byte-identical to the source's, in order (one the model wrote itself, or text
  glued to a restored block's closing fence)
- commentary: a preamble ("Here is the translation:", "다음은 요청하신 번역입니다:") or a trailing note ("(참고: ...)")
- wrong_language: Hangul share of ALL letters (Latin, Han, Kana, any script count against it); foreign_script: Han,
  Kana and other non-Latin scripts above their own cap (a Chinese or Japanese drift inside Korean text)
- too_long / too_short: Korean letters / English letters outside the reference range
- sentences: too few sentences (cut after two of three) or too many (invented ones)
- terms: numbers and acronyms of the source (53, DNS, 3.7) missing from the reply (a dropped sentence)
- structure: paragraph, list-item or heading count differs from the source
- copied_source: English word 4-grams left in the output; wrong_register: speech level
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields

from koblla.text.register import register_ok
from koblla.text.verbatim import FENCE_RE, PLACEHOLDER_RE, strip_verbatim

_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*")
_SENTENCE_END_RE = re.compile(r"[.!?。？！](?=[\s\"'”’)\]*_]|$)")
_LIST_ITEM_RE = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+\S", re.M)
_HEADING_RE = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.M)
_PARAGRAPH_SPLIT_RE = re.compile(r"\n[ \t]*\n")
# Terms a Korean translation keeps as written: numbers and acronyms (DNS, UDP, 3.7, 53); a reply missing several
# of them dropped a sentence even when its length looks fine.
_TERM_RE = re.compile(r"(?<![\w.])(?:\d+(?:[.,:]\d+)*|[A-Z][A-Z0-9]{2,}s?)(?!\w)")

CHECKS = ("empty", "truncated", "placeholders", "code_blocks", "commentary", "wrong_language", "foreign_script",
          "length", "sentences", "terms", "structure", "copied_source", "wrong_register")
# reason -> check it belongs to (a check can fail for more than one reason)
REASON_CHECK = {"too_long": "length", "too_short": "length", "too_few_sentences": "sentences",
                "too_many_sentences": "sentences", "missing_terms": "terms", "paragraphs": "structure",
                "list_items": "structure", "headings": "structure"}


@dataclass(frozen=True)
class Limits:
    """The gate's bounds, as `translate.*` in params.yaml sets them (the values and their docs live there)."""

    min_hangul_share: float
    max_foreign_script_share: float
    min_length_ratio: float
    max_length_ratio: float
    min_sentence_ratio: float
    max_sentence_ratio: float
    max_missing_terms_share: float
    min_terms: int
    max_paragraph_diff: int
    max_list_item_diff: int
    max_heading_diff: int
    min_register_share: float
    max_copied_share: float
    placeholders_in_order: bool
    reject_commentary: bool
    meta_pattern: str
    opener_pairs: tuple  # of (reply opener, source opener) regex pairs
    closer_pattern: str
    source_closer_pattern: str

    @classmethod
    def from_params(cls, p) -> Limits:
        kw = {f.name: getattr(p, f.name) for f in fields(cls)}
        kw["opener_pairs"] = tuple(tuple(x) for x in kw["opener_pairs"])  # hashable (the dataclass is frozen)
        return cls(**kw)


# ---- scripts -----------------------------------------------------------------------------------------------------
def _script(ch: str) -> str:
    o = ord(ch)
    if 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F or 0xA960 <= o <= 0xA97F \
            or 0xD7B0 <= o <= 0xD7FF:
        return "hangul"
    if o < 0x250 or 0x1E00 <= o <= 0x1EFF or 0xFF21 <= o <= 0xFF5A:
        return "latin"
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9D:
        return "kana"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF:
        return "han"
    return "other"


def script_counts(text: str) -> dict[str, int]:
    """Letters of `text` by script: hangul, latin, han, kana, other (Cyrillic, Greek, Thai ...)."""
    counts = {"hangul": 0, "latin": 0, "han": 0, "kana": 0, "other": 0}
    for ch in text:
        if ch.isalpha():
            counts[_script(ch)] += 1
    return counts


def script_share(text: str, lang: str) -> float:
    """Share of ALL letters in the target script (Hangul for ko, Latin for en); 1.0 without letters."""
    c = script_counts(text)
    total = sum(c.values())
    if not total:
        return 1.0
    return (c["hangul"] if lang == "ko" else c["latin"]) / total


def foreign_share(text: str) -> float:
    """Share of letters that are neither Hangul nor Latin (Han, Kana, other scripts)."""
    c = script_counts(text)
    total = sum(c.values())
    return (c["han"] + c["kana"] + c["other"]) / total if total else 0.0


# ---- structure ---------------------------------------------------------------------------------------------------
def _letters(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def count_sentences(plain: str) -> int:
    return len(_SENTENCE_END_RE.findall(plain))


def paragraphs(text: str) -> list[str]:
    """Blocks between blank lines; a fenced code block counts as one block whatever it holds."""
    spans: list[str] = []

    def keep(m) -> str:
        spans.append(m.group(0))
        return f"\x00{len(spans) - 1}\x01"

    masked = FENCE_RE.sub(keep, text)
    back = re.compile("\x00(\\d+)\x01")
    return [back.sub(lambda m: spans[int(m.group(1))], p)
            for p in _PARAGRAPH_SPLIT_RE.split(masked.strip()) if p.strip()]


def structure_counts(text: str) -> dict[str, int]:
    """Paragraphs (code blocks counted as one), list items, headings (outside code blocks)."""
    masked = FENCE_RE.sub(lambda m: "CODE", PLACEHOLDER_RE.sub("X", text))
    return {"paragraphs": len(paragraphs(text)), "list_items": len(_LIST_ITEM_RE.findall(masked)),
            "headings": len(_HEADING_RE.findall(masked))}


def copied_share(source: str, output: str, n: int = 4) -> float:
    """Share of the source's word n-grams that appear verbatim in the output (an untranslated copy scores ~1)."""
    src = [w.lower() for w in _WORD_RE.findall(source)]
    out = " ".join(w.lower() for w in _WORD_RE.findall(output))
    if len(src) < n:
        return 0.0
    grams = {" ".join(src[i:i + n]) for i in range(len(src) - n + 1)}
    return sum(g in out for g in grams) / len(grams)


def _edge_lines(text: str) -> tuple[str, str]:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return (lines[0], lines[-1]) if lines else ("", "")


def has_commentary(source: str, output: str, limits: Limits) -> bool:
    """A preamble or trailing note the source does not have (first / last non-empty line, code removed)."""
    s_first, s_last = _edge_lines(strip_verbatim(source))
    o_first, o_last = _edge_lines(strip_verbatim(output))
    meta = re.compile(limits.meta_pattern)
    if meta.search(o_first) and not meta.search(s_first) or meta.search(o_last) and not meta.search(s_last):
        return True
    for reply_opener, source_opener in limits.opener_pairs:
        if re.search(reply_opener, o_first) and not re.search(source_opener, s_first):
            return True
    if o_last != o_first and re.search(limits.closer_pattern, o_last) \
            and not re.search(limits.source_closer_pattern, s_last):
        return True
    return False


def check_translation(source: str, output: str, register: str, limits: Limits, target_lang: str = "ko") -> list[str]:
    """Reasons `output` (placeholders already restored) is not an acceptable translation of `source` ([]: accepted)."""
    if not output or not output.strip():
        return ["empty"]
    reasons: list[str] = []
    src_plain, out_plain = strip_verbatim(source), strip_verbatim(output)
    # Fenced blocks as CommonMark reads them, byte-identical and in order: a block the model wrote itself, or text
    # glued to a restored block's closing fence (which unterminates it and hides the text inside) both fail.
    if FENCE_RE.findall(source) != FENCE_RE.findall(output):
        reasons.append("code_blocks")
    if limits.reject_commentary and has_commentary(source, output, limits):
        reasons.append("commentary")
    src_letters, out_letters = _letters(src_plain), _letters(out_plain)
    if src_letters and script_share(out_plain, target_lang) < limits.min_hangul_share:
        reasons.append("wrong_language")
    if foreign_share(out_plain) > limits.max_foreign_script_share:
        reasons.append("foreign_script")
    if src_letters >= 20:  # ratios of tiny strings ("Thanks!") say nothing
        ratio = out_letters / src_letters
        if ratio > limits.max_length_ratio:
            reasons.append("too_long")
        elif ratio < limits.min_length_ratio:
            reasons.append("too_short")
    # Sentences: over the whole reply, then paragraph by paragraph and line by line where they line up (three
    # invented sentences at the end of a long answer hardly move the totals).
    pairs = [(src_plain, out_plain)]
    p_src, p_out = paragraphs(source), paragraphs(output)
    if len(p_src) == len(p_out) > 1:
        pairs += [(strip_verbatim(a), strip_verbatim(b)) for a, b in zip(p_src, p_out, strict=True)]
    for a, b in list(zip(p_src, p_out, strict=True)) if len(p_src) == len(p_out) else []:
        la, lb = a.splitlines(), b.splitlines()
        if len(la) == len(lb) > 1 and not FENCE_RE.fullmatch(a):  # list items, line by line
            pairs += [(strip_verbatim(x), strip_verbatim(y)) for x, y in zip(la, lb, strict=True)]
    for a, b in pairs:
        s_src, s_out = count_sentences(a), count_sentences(b)
        if s_src >= 2 and s_out < limits.min_sentence_ratio * s_src and "too_few_sentences" not in reasons:
            reasons.append("too_few_sentences")
        if s_out > limits.max_sentence_ratio * s_src + 1 and "too_many_sentences" not in reasons:
            reasons.append("too_many_sentences")
    terms = _TERM_RE.findall(src_plain)
    if len(terms) >= limits.min_terms:
        missing = sum(t not in out_plain for t in terms)
        if missing / len(terms) > limits.max_missing_terms_share:
            reasons.append("missing_terms")
    st_src, st_out = structure_counts(source), structure_counts(output)
    for name, bound in (("paragraphs", limits.max_paragraph_diff), ("list_items", limits.max_list_item_diff),
                        ("headings", limits.max_heading_diff)):
        if abs(st_src[name] - st_out[name]) > bound:
            reasons.append(name)
    if copied_share(src_plain, out_plain) > limits.max_copied_share:
        reasons.append("copied_source")
    if target_lang == "ko" and "wrong_language" not in reasons:
        ok, _ = register_ok(output, register, limits.min_register_share)
        if not ok:
            reasons.append("wrong_register")
    return reasons


def checks_passed(reasons: list[str]) -> list[str]:
    """The CHECKS a reply passed, given the reasons it failed (for the side-by-side file)."""
    failed = {REASON_CHECK.get(r, r) for r in reasons}
    return [c for c in CHECKS if c not in failed]
