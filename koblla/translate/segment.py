"""Faithfulness helpers: mask code/URLs/LaTeX before translation and restore them after; split long messages.

Masking replaces every span that must come back verbatim (fenced code blocks, inline code, URLs, LaTeX) with a
numbered placeholder `⟦n⟧`; the model is told to keep placeholders as they are, and `restore` puts the spans back
(failing when a placeholder was lost, duplicated or invented). Splitting cuts a message at paragraph or code-block
boundaries (then lines, then sentences) so each chunk fits a token budget; chunks are rejoined with the exact
separators they were cut at, so markdown structure survives.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE_OPEN_RE = re.compile(r"^([ \t]*)(`{3,}|~{3,})([^\n]*)$", re.M)


class _FenceMatch:
    """A fenced code block found by `Fences` (the re.Match methods the callers use)."""

    def __init__(self, text: str, start: int, end: int):
        self.string, self._start, self._end = text, start, end

    def group(self, n: int = 0) -> str:
        assert n == 0, "fence matches have no groups"
        return self.string[self._start:self._end]

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end


class Fences:
    """Fenced code blocks as CommonMark reads them: an opening line of 3+ backticks or tildes (a backtick fence's
    info string holds no backtick), closed by a line of the SAME character at least as long with nothing but
    spaces after it; a fence left open runs to the end of the text. So a ```` block that shows a ``` block inside
    is one block, and ~~~ works too. Indentation is allowed (fences inside list items). Offers the re.Pattern
    methods the callers use (finditer, findall, sub, fullmatch)."""

    def finditer(self, text: str):
        pos = 0
        while (m := _FENCE_OPEN_RE.search(text, pos)) is not None:
            fence, info = m.group(2), m.group(3)
            if fence[0] == "`" and "`" in info:  # "```a``` b": inline code, not a fence
                pos = m.end() + 1
                continue
            close = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$", re.M)
            c = close.search(text, m.end() + 1) if m.end() < len(text) else None
            end = c.end() if c else len(text)
            yield _FenceMatch(text, m.start(), end)
            pos = end + 1

    def findall(self, text: str) -> list[str]:
        return [m.group(0) for m in self.finditer(text)]

    def sub(self, repl, text: str) -> str:
        out, pos = [], 0
        for m in self.finditer(text):
            out.append(text[pos:m.start()])
            out.append(repl(m))
            pos = m.end()
        out.append(text[pos:])
        return "".join(out)

    def fullmatch(self, text: str):
        ms = list(self.finditer(text))
        return ms[0] if len(ms) == 1 and ms[0].start() == 0 and ms[0].end() == len(text) else None


FENCE_RE = Fences()
# inline LaTeX $x^2$ (not "$5 and $10"); Korean particles may follow directly ("$x$는")
_INLINE_LATEX = re.compile(r"(?<![A-Za-z0-9$])\$(?=\S)[^$\n]{1,200}?(?<=\S)\$(?![A-Za-z0-9$])")
_SPAN_PATTERNS = [
    FENCE_RE,
    re.compile(r"\$\$.+?\$\$", re.S),  # display LaTeX
    re.compile(r"\\\[.+?\\\]", re.S),
    re.compile(r"\\\(.+?\\\)", re.S),
    re.compile(r"(``?)[^`\n]+?\1"),  # inline code
    _INLINE_LATEX,
    re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`\x00\x01]+"),
    re.compile(r"\bwww\.[a-z0-9-]+\.[^\s<>\"'`\x00\x01]+", re.I),
]
PLACEHOLDER_RE = re.compile(r"⟦(\d+)⟧")
_TRAILING_URL_PUNCT = ".,;:!?'\""


def _is_latex_inline(s: str) -> bool:
    # "$x$" or "$a^2 + b$": math-looking; "$5 and $" is not (digits then space are prices).
    body = s[1:-1]
    return len(body) <= 3 or bool(re.search(r"[\\^_{}=]", body))


def _trim_url(s: str) -> str:
    while s and s[-1] in _TRAILING_URL_PUNCT:
        s = s[:-1]
    while s.endswith(")") and s.count(")") > s.count("("):  # [text](url) or "(see http://x)"
        s = s[:-1]
    return s


@dataclass
class Masked:
    text: str  # with placeholders
    spans: list[str]  # spans[n] replaces ⟦n⟧


_MARK_RE = re.compile("\x00(\\d+)\x01")  # internal marker while masking; never in user text after the first step


def mask(text: str) -> Masked:
    """Replace verbatim spans with ⟦n⟧, earliest pattern first (code fences win over URLs inside them).

    Text that already contains "⟦n⟧" (or NUL bytes) keeps it: such tokens are masked as spans themselves."""
    spans: list[str] = []

    def keep(s: str) -> str:
        spans.append(s)
        return f"\x00{len(spans) - 1}\x01"

    text = re.sub(r"⟦\d+⟧|[\x00\x01]", lambda m: keep(m.group(0)), text)
    for pat in _SPAN_PATTERNS:
        def repl(m: re.Match) -> str:
            s = m.group(0)
            if pat is _INLINE_LATEX and not _is_latex_inline(s):
                return s
            if _MARK_RE.search(s):  # would swallow an earlier span: leave as is
                return s
            tail = ""
            if "://" in s or s.lower().startswith("www."):
                trimmed = _trim_url(s)
                tail, s = s[len(trimmed):], trimmed
            return keep(s) + tail

        text = pat.sub(repl, text)
    # Number placeholders in reading order: models keep "⟦0⟧ ... ⟦1⟧" more reliably than a shuffled order.
    order = [int(n) for n in _MARK_RE.findall(text)]
    new_id = {old: new for new, old in enumerate(order)}
    text = _MARK_RE.sub(lambda m: f"⟦{new_id[int(m.group(1))]}⟧", text)
    return Masked(text, [spans[old] for old in order])


class PlaceholderError(ValueError):
    pass


def restore(text: str, spans: list[str]) -> str:
    """Put spans back; every placeholder must occur exactly once (else the model mangled the text)."""
    found = [int(n) for n in PLACEHOLDER_RE.findall(text)]
    expected = list(range(len(spans)))
    if sorted(found) != expected:
        missing = sorted(set(expected) - set(found))
        extra = sorted(n for n in set(found) if found.count(n) > 1 or n not in expected)
        raise PlaceholderError(f"placeholders missing {missing}, duplicated/unknown {extra}")
    return PLACEHOLDER_RE.sub(lambda m: spans[int(m.group(1))], text)


def mask_with(text: str, spans: list[str]) -> str:
    """Mask `text` (e.g. a reference translation) using another text's spans, longest first."""
    for n in sorted(range(len(spans)), key=lambda i: -len(spans[i])):
        text = text.replace(spans[n], f"⟦{n}⟧", 1)
    return text


def count_code_blocks(text: str) -> int:
    return len(FENCE_RE.findall(text))


def strip_verbatim(text: str) -> str:
    """Text with code, URLs and LaTeX removed: what language/register/length checks look at."""
    return PLACEHOLDER_RE.sub(" ", mask(text).text)


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
