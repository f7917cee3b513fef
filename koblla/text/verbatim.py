"""Verbatim spans (fenced code, inline code, URLs, LaTeX): find them, mask them as ⟦n⟧ and put them back.

Masking replaces every span that must come back verbatim with a numbered placeholder `⟦n⟧`; a translation model is
told to keep placeholders as they are, and `restore` puts the spans back (failing when a placeholder was lost,
duplicated or invented). `strip_verbatim` gives the prose alone, what language, register and length checks look at.
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
        def repl(m: re.Match, pat: re.Pattern = pat) -> str:
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


def strip_verbatim(text: str) -> str:
    """Text with code, URLs and LaTeX removed: what language/register/length checks look at."""
    return PLACEHOLDER_RE.sub(" ", mask(text).text)
