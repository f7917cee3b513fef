"""Split long messages so each chunk fits a token budget.

Splitting cuts a message at paragraph or code-block boundaries (then lines, then sentences); chunks are rejoined
with the exact separators they were cut at, so markdown structure survives. Fenced code blocks are never cut inside.
"""
from __future__ import annotations

import re

from koblla.text.verbatim import FENCE_RE


def estimate_tokens(text: str) -> int:
    """Rough token count for budgets and metrics when the API reports none: ~4 UTF-8 bytes per token for English,
    about one token per Hangul syllable (3 bytes) for Korean."""
    return max(1, (len(text.encode("utf-8")) + 3) // 4)


# ---- splitting ---------------------------------------------------------------------------------------------------
_SPLITTERS = [re.compile(r"\n[ \t]*\n\s*"), re.compile(r"\n"), re.compile(r"(?<=[.!?])[ \t]+(?=\S)")]


def _pieces(text: str, level: int) -> list[tuple[str, str]]:
    """(piece, separator_after) pairs; fenced code blocks are never cut inside."""
    if level == 0:
        out: list[tuple[str, str]] = []
        pos = 0
        for m in FENCE_RE.finditer(text):
            out.extend(_split_plain(text[pos:m.start()], level))
            out.append((m.group(0), ""))
            pos = m.end()
        out.extend(_split_plain(text[pos:], level))
        # Merge empty pieces' separators into the previous piece so joining stays exact.
        merged: list[tuple[str, str]] = []
        for piece, sep in out:
            if not piece and merged:
                merged[-1] = (merged[-1][0], merged[-1][1] + sep)
            elif not piece:
                merged.append(("", sep))
            else:
                merged.append((piece, sep))
        return merged
    return _split_plain(text, level)


def _split_plain(text: str, level: int) -> list[tuple[str, str]]:
    out, pos = [], 0
    for m in _SPLITTERS[level].finditer(text):
        out.append((text[pos:m.start()], m.group(0)))
        pos = m.end()
    out.append((text[pos:], ""))
    return out


def split_message(text: str, budget_tokens: int) -> list[tuple[str, str]]:
    """Chunks (text, separator_after) with "".join(c + s) == text, each within budget where a cut allows."""
    return _split(text, budget_tokens, 0)


def _split(text: str, budget: int, level: int) -> list[tuple[str, str]]:
    if estimate_tokens(text) <= budget or level >= len(_SPLITTERS):
        return [(text, "")]
    chunks: list[tuple[str, str]] = []
    cur, cur_sep = "", ""
    for piece, sep in _pieces(text, level):
        if not piece:
            cur_sep += sep
            continue
        if estimate_tokens(piece) > budget and not FENCE_RE.fullmatch(piece.strip("\n")):
            if cur:
                chunks.append((cur, cur_sep))
                cur, cur_sep = "", ""
            sub = _split(piece, budget, level + 1)
            sub[-1] = (sub[-1][0], sub[-1][1] + sep)
            chunks.extend(sub)
            continue
        if cur and estimate_tokens(cur + cur_sep + piece) > budget:
            chunks.append((cur, cur_sep))
            cur, cur_sep = piece, sep
        else:
            cur, cur_sep = (cur + cur_sep + piece if cur else piece), sep
    if cur or cur_sep:
        chunks.append((cur, cur_sep))
    # Leading separators (text starting with blank lines) ride on an empty first chunk: fold them in.
    assert "".join(c + s for c, s in chunks) == text, "split_message must be lossless"
    return chunks
