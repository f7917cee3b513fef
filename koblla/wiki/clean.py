"""Wikitext -> plain article text: cheap regex pre-cleaning, then mwparserfromhell on what is left.

Why two passes: mwparserfromhell builds a Python object per node, so it costs ~30 ms per real article. Most of the
markup (comments, refs, templates, tables, files, categories, plain and external links, formatting tags, bold/italic,
list markers) can be removed by C-speed regular expressions with the same result (tests/test_wiki_clean.py checks
this against a parser-only reference), so the parser only runs on articles where something is left that regexes
cannot handle safely (links whose target has a colon, <nowiki>, unbalanced markup, ...), and on very little text.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

import mwparserfromhell
from mwparserfromhell.nodes import (
    Argument,
    Comment,
    ExternalLink,
    Heading,
    HTMLEntity,
    Tag,
    Template,
    Text,
    Wikilink,
)

# Namespace prefixes whose links are not prose; extended with the dump's own localized names (siteinfo ns 6, 14).
FILE_PREFIXES = ("파일", "file", "그림", "image", "media", "미디어")
CATEGORY_PREFIXES = ("분류", "category")
# Tags whose content is not prose (references, formulas, galleries, code, maps): dropped with their content.
DROP_TAGS = ("ref", "references", "gallery", "math", "chem", "ce", "score", "timeline", "syntaxhighlight", "source",
             "imagemap", "graph", "templatedata", "mapframe", "maplink", "inputbox", "categorytree", "table")

# Tags are paired by _paired_tags in one linear pass (a regex `<ref>.*?</ref>` rescans the rest of the page for each
# unclosed tag: quadratic in their number). A tag's attributes hold no `<` or `>`.
_NOWIKI_TAG = re.compile(r"<(?:(nowiki)\b([^<>]*)|/(nowiki)\s*)>", re.I)  # raw text: no pass may touch it
_STASHED = re.compile(r"\x00(\d+)\x00")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_DROP_TAG = re.compile(rf"<(?:({'|'.join(DROP_TAGS)})\b([^<>]*)|/({'|'.join(DROP_TAGS)})\s*)>", re.I)
_STRAY_REF = re.compile(r"</?ref\b[^<>]*>", re.I)
_MAGIC = re.compile(r"__[A-Z가-힣]+__")
_TEMPLATE = re.compile(r"\{\{([^{}]*)\}\}")  # innermost template: its body holds no braces
_TABLE = re.compile(r"\{\|[^{}]*?\n[ \t]*\|\}")  # innermost table (nested ones contain "{|" and wait their turn)
_HEADING = re.compile(r"^(={1,6})[ \t]*(.+?)[ \t]*\1[ \t]*$", re.M)
_BOLD_ITALIC = re.compile(r"'''''|'''|''")
_LIST_MARKER = re.compile(r"\n[*#:;]+[ \t]*")  # list / indent / definition markers at line start
# Run after file/category/interlanguage links are gone, so a colon left in a target is an ordinary page name.
_LINK_PIPED = re.compile(r"\[\[([^\[\]|{}]*)\|([^\[\]{}|]*)\]\]")  # [[target|label]] -> label
_LINK_PLAIN = re.compile(r"\[\[([^\[\]|{}]*)\]\]")  # [[target]] -> target
_INTERLANG_LINK = re.compile(r"\[\[[a-z]{2,3}(?:-[a-z]+)*:[^\[\]]*\]\]")  # [[en:Seoul]]: not shown in the text
# What the parser pass is needed for; a lone "[" or "<" is text ("[sic]", "<10 ppm").
# A `<` that opens no complete tag (`<ref name=x` without `>`): text, escaped before the parser sees it.
_BROKEN_TAG = re.compile(r"<(?=[A-Za-z/])(?![A-Za-z/][^<>]*>)")
_BRACKETS = re.compile(r"\{\{|\}\}|\[\[|\]\]")
_BRACKET_TEXT = {"{{": "&#123;&#123;", "[[": "&#91;&#91;"}
_RESIDUAL_MARKUP = re.compile(r"\[\[|\{\{|\{\||<[A-Za-z/!]|\[(?:https?:|ftp:)?//")
_LANG_CODE = re.compile(r"^[a-z]{2,3}(?:-[a-zA-Z]{2,8})*$")
_INTERLANG = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)*$")
_EMPTY_PARENS = re.compile(r"[(（]\s*[,;:、]?\s*[)）]")
_EXT_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\[\]<>\"]+[ \t]*([^\]\n]*)\]")  # [URL label] -> label
# Formatting tags: the tags go, their content stays (<nowiki> is left to the parser: its content must stay raw).
_FORMAT_TAG = re.compile(
    r"</?(?:small|big|span|sup|sub|b|i|u|s|strong|em|center|div|font|abbr|cite|blockquote|poem|p|code|tt|var|kbd|"
    r"del|ins|mark|q|dfn|bdi|bdo|ruby|rb|rt|rp|wbr|onlyinclude|includeonly)\b[^<>]*>", re.I)
_BREAK_TAG = re.compile(r"<(?:br|hr)\s*/?>", re.I)
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);")
# Spaces other than " " (tab, no-break, en/em/thin, zero-width, ideographic). Replaced with str.replace: a regex
# character class over non-ASCII ranges scans ~10x slower than a handful of `in` checks.
_ODD_SPACES = ("\t", "\u00a0", "\u200b", "\u3000", "\u2002", "\u2003", "\u2009", "\u202f", "\u2007", "\u2008")
_BLANK_LINES = re.compile(r"\n\s+")  # newline plus blank lines / indentation after it


@dataclass(frozen=True)
class CleanConfig:
    keep_templates: frozenset[str] = frozenset()
    drop_sections: frozenset[str] = frozenset()
    keep_headings: bool = False
    file_prefixes: tuple[str, ...] = FILE_PREFIXES
    category_prefixes: tuple[str, ...] = CATEGORY_PREFIXES

    @classmethod
    def build(cls, keep_templates, drop_sections, keep_headings, file_prefixes=(), category_prefixes=()):
        return cls(
            keep_templates=frozenset(_norm_name(t) for t in keep_templates),
            drop_sections=frozenset(_norm_heading(s) for s in drop_sections),
            keep_headings=keep_headings,
            file_prefixes=tuple(dict.fromkeys(p.lower() for p in (*FILE_PREFIXES, *file_prefixes))),
            category_prefixes=tuple(dict.fromkeys(p.lower() for p in (*CATEGORY_PREFIXES, *category_prefixes))),
        )

    def _cached(self, name: str, build) -> re.Pattern:
        pat = self.__dict__.get(name)
        if pat is None:
            pat = build()
            object.__setattr__(self, name, pat)
        return pat

    @property
    def drop_template(self) -> re.Pattern:
        """Innermost templates not in the allowlist (removed by C code alone, no Python callback)."""
        def build():
            names = "|".join(_name_pattern(t) for t in sorted(self.keep_templates))
            guard = rf"(?![ \t]*(?i:{names})[ \t]*[|}}])" if names else ""
            return re.compile(r"\{\{" + guard + r"[^{}]*\}\}")
        return self._cached("_drop_template", build)

    @property
    def non_prose_link(self) -> re.Pattern:
        # Cached per config: file/category links, with up to one level of nested links in a caption.
        pat = self.__dict__.get("_non_prose_link")
        if pat is None:
            names = "|".join(re.escape(p) for p in (*self.file_prefixes, *self.category_prefixes))
            pat = re.compile(rf"\[\[[ \t]*:?[ \t]*(?:{names})[ \t]*:(?:[^\[\]]|\[\[[^\[\]]*\]\])*\]\]", re.I)
            object.__setattr__(self, "_non_prose_link", pat)
        return pat


def _name_pattern(name: str) -> str:
    """Regex for a template name as written in wikitext: a space may also be written `_` (and vice versa)."""
    return "[ _]+".join(re.escape(part) for part in re.split(r"[ _]+", name.strip()))


def _norm_name(name: str) -> str:
    return name.strip().replace("_", " ").lower()


def _norm_heading(title: str) -> str:
    return re.sub(r"[\s'\[\]]+", "", title).lower()


def _split_args(body: str) -> list[str]:
    """Split a template body on `|`, but not inside [[...]] links."""
    if "[[" not in body:
        return body.split("|")
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(body):
        two = body[i:i + 2]
        if two in ("[[", "]]"):
            depth += 1 if two == "[[" else -1
            cur.append(two)
            i += 2
            continue
        if body[i] == "|" and depth <= 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(body[i])
        i += 1
    parts.append("".join(cur))
    return parts


def _template_text(body: str, keep: frozenset[str]) -> str:
    """Text an allowlisted template stands for: its positional args, minus a leading language code."""
    parts = _split_args(body)
    if _norm_name(parts[0]) not in keep:
        return ""
    args = [a.strip() for a in parts[1:] if "=" not in a.split("[[", 1)[0]]
    if len(args) > 1 and _LANG_CODE.match(args[0]):
        args = args[1:]
    return " ".join(a for a in args if a)


def _escape_tag(element: str) -> str:
    """An unclosed tag as text: `&lt;math>` reads the same after the parser (which decodes it once) but is not
    a tag it would try to close at every later position (superlinear on thousands of them)."""
    return "&lt;" + element[1:]


def _unclosed_drop_tag(element: str) -> str:
    return "" if _STRAY_REF.fullmatch(element) else _escape_tag(element)  # a stray <ref> goes, as it always did


def _paired_tags(text: str, tags: re.Pattern, repl, unclosed=_escape_tag) -> str:
    """Replace each `<x ...>...</x>` (or `<x .../>`) that `tags` finds with repl(element); linear in len(text).

    `tags` matches an open tag (groups 1 name, 2 attributes) or a close tag (group 3 name). An open tag runs to the
    first close tag of its name after it (as the regex `<x\\b[^>]*?>.*?</x\\s*>` would); an unclosed one becomes text.
    """
    tokens = list(tags.finditer(text))
    if not tokens:
        return text
    closes: dict[str, list[int]] = {}
    for i, m in enumerate(tokens):
        if m.group(3) is not None:
            closes.setdefault(m.group(3).lower(), []).append(i)
    nexts = {name: 0 for name in closes}  # per name: first close token not yet behind us
    out, pos = [], 0
    for i, m in enumerate(tokens):
        if m.start() < pos or m.group(1) is None:
            continue  # inside an element already replaced, or a close tag on its own
        if m.group(2).endswith("/"):
            end = m.end()
        else:
            name = m.group(1).lower()
            idx = closes.get(name, ())
            j = nexts.get(name, 0)
            while j < len(idx) and idx[j] <= i:
                j += 1
            if idx:
                nexts[name] = j
            if j >= len(idx):  # unclosed: shown as text
                out.append(text[pos:m.start()])
                out.append(unclosed(m.group(0)))
                pos = m.end()
                continue
            end = tokens[idx[j]].end()
        out.append(text[pos:m.start()])
        out.append(repl(text[m.start():end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _escape_unclosed_brackets(text: str) -> str:
    """`{{` / `[[` that no `}}` / `]]` closes, as entities: the parser shows them as text anyway, but tries to close
    each one at every later position first (minutes for a few thousand). One linear pass."""
    stacks: dict[str, list[int]] = {"{{": [], "[[": []}
    for m in _BRACKETS.finditer(text):
        tok = m.group(0)
        if tok in stacks:
            stacks[tok].append(m.start())
        elif stacks["{{" if tok == "}}" else "[["]:
            stacks["{{" if tok == "}}" else "[["].pop()
    unclosed = sorted((pos, tok) for tok, st in stacks.items() for pos in st)
    if not unclosed:
        return text
    out, prev = [], 0
    for pos, tok in unclosed:
        out.append(text[prev:pos])
        out.append(_BRACKET_TEXT[tok])
        prev = pos + 2
    out.append(text[prev:])
    return "".join(out)


def _remove_templates_and_tables(text: str, cfg: CleanConfig) -> str:
    def repl(m: re.Match) -> str:
        return _template_text(m.group(1), cfg.keep_templates)

    while "{{" in text or "{|" in text:
        new = cfg.drop_template.sub("", text)
        if cfg.keep_templates and "{{" in new:
            new = _TEMPLATE.sub(repl, new)
        new = _TABLE.sub("", new)
        if new == text:
            break  # unbalanced braces left: the parser pass deals with them
        text = new
    return text


def _sections(text: str, cfg: CleanConfig) -> str:
    """Drop sections named in cfg.drop_sections (down to the next heading of the same or a higher level)
    and turn the other headings into a line of their text, or drop them."""
    out, pos, drop_level = [], 0, 0
    for m in _HEADING.finditer(text):
        level = len(m.group(1))
        if not drop_level:
            out.append(text[pos:m.start()])
        elif level <= drop_level:
            drop_level = 0
        if not drop_level:
            if _norm_heading(m.group(2)) in cfg.drop_sections:
                drop_level = level
            elif cfg.keep_headings:
                out.append(m.group(2))
        pos = m.end()
    if not drop_level:
        out.append(text[pos:])
    return "".join(out)


def preclean(text: str, cfg: CleanConfig) -> str:
    """The regex pass: everything here gives the same text the parser pass would, only faster."""
    stash: list[str] = []
    if "owiki" in text or "OWIKI" in text:
        # <nowiki> content is shown as is: set it aside, put it back for the parser (which keeps it raw).
        def put_aside(element: str) -> str:
            stash.append(element)
            return f"\x00{len(stash) - 1}\x00"

        text = _paired_tags(text, _NOWIKI_TAG, put_aside)
    text = _COMMENT.sub("", text)
    if "<" in text:
        text = _STRAY_REF.sub("", _paired_tags(text, _DROP_TAG, lambda element: "", _unclosed_drop_tag))
    text = _MAGIC.sub("", text)
    text = _remove_templates_and_tables(text, cfg)
    if "=" in text:
        text = _sections(text, cfg)
    if "[[" in text:
        text = _INTERLANG_LINK.sub("", cfg.non_prose_link.sub("", text))
        text = _LINK_PLAIN.sub(r"\1", _LINK_PIPED.sub(r"\2", text))
    if "//" in text:
        text = _EXT_LINK.sub(r"\1", text)
    if "<" in text:
        text = _BREAK_TAG.sub("\n", _FORMAT_TAG.sub("", text))
    text = _BOLD_ITALIC.sub("", text)
    text = _LIST_MARKER.sub("\n", "\n" + text)[1:]
    if stash:
        text = _STASHED.sub(lambda m: stash[int(m.group(1))], text)
    return text


def _is_non_prose_target(title: str, cfg: CleanConfig) -> bool:
    t = title.strip().lstrip(":").lower()
    prefix, colon, _ = t.partition(":")
    if not colon:
        return False
    prefix = prefix.strip()
    return prefix in cfg.file_prefixes or prefix in cfg.category_prefixes or bool(_INTERLANG.match(prefix))


def _strip(code, cfg: CleanConfig, out: list[str]) -> None:
    """Plain text of a parsed tree, dropping non-prose nodes (our own strip_code, to control what goes)."""
    for node in code.nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Wikilink):
            if not _is_non_prose_target(str(node.title), cfg):
                _strip(node.text if node.text is not None else node.title, cfg, out)
        elif isinstance(node, ExternalLink):
            if node.title is not None:
                _strip(node.title, cfg, out)
            elif not node.brackets:
                out.append(str(node.url))
        elif isinstance(node, Tag):
            tag = str(node.tag).strip().lower()
            if tag in ("br", "hr"):
                out.append("\n")
            elif tag not in DROP_TAGS and node.contents is not None and tag not in ("th", "td", "tr", "caption"):
                _strip(node.contents, cfg, out)
        elif isinstance(node, HTMLEntity):
            out.append(node.normalize())
        elif isinstance(node, Heading):
            if cfg.keep_headings:
                out.append("\n")
                _strip(node.title, cfg, out)
                out.append("\n")
        elif isinstance(node, (Template, Comment, Argument)):
            continue
        else:  # a node type added by a later mwparserfromhell: keep what it says is its text
            out.append(str(node.__strip__(normalize=True, collapse=True) or ""))


def normalize_whitespace(text: str) -> str:
    """One space between words, no empty lines, no empty parentheses left by removed templates.

    Written with str methods where a regex would try a match at every space (3-10x slower on long articles).
    """
    for ch in _ODD_SPACES:
        if ch in text:
            text = text.replace(ch, " ")
    while "  " in text:
        text = text.replace("    ", " ").replace("  ", " ")
    if "(" in text or "（" in text:
        text = _EMPTY_PARENS.sub("", text)
    text = text.replace(" ,", ",").replace(" .", ".").replace(" )", ")").replace(" \n", "\n")
    return _BLANK_LINES.sub("\n", text).strip()


def _unescape(m: re.Match) -> str:
    return html.unescape(m.group(0))


def clean_wikitext(text: str, cfg: CleanConfig) -> str:
    """Article wikitext -> plain text, one paragraph or list item per line."""
    text = preclean(text, cfg)
    if _RESIDUAL_MARKUP.search(text):
        if "<" in text:
            text = _BROKEN_TAG.sub("&lt;", text)
        text = _escape_unclosed_brackets(text)
        # Residual markup the regexes leave alone; the parser also decodes entities (&lt; -> <) exactly once.
        out: list[str] = []
        _strip(mwparserfromhell.parse(text, skip_style_tags=True), cfg, out)
        text = "".join(out)
    elif "&" in text:
        text = _ENTITY.sub(_unescape, text)
    return normalize_whitespace(text)
