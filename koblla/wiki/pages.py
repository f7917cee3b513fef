"""One `<page>` element -> a CSV row or a drop reason. Runs inside the worker processes."""
from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field

from koblla.wiki.clean import CleanConfig, _name_pattern, clean_wikitext

log = logging.getLogger(__name__)

_REDIRECT = re.compile(r"^\s*#\s*(?:redirect|넘겨주기)\b", re.I)
_FIRST_ID = re.compile(rb"<id>\s*(\d+)\s*</id>")
MAX_ERRORS_KEPT = 100  # page ids of parse errors listed in the metrics file (all of them are logged)


class PageError(Exception):
    """A page that cannot be read or cleaned; counted and skipped, never silently."""


class PageTimeout(Exception):
    """A page took longer than extract_wiki.max_page_seconds to clean."""


def _on_alarm(signum, frame):
    raise PageTimeout()


@contextlib.contextmanager
def time_budget(seconds: float):
    """Raise PageTimeout in the block after `seconds` (SIGALRM; main thread only, else no limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass(frozen=True)
class PageConfig:
    clean: CleanConfig
    min_chars: int
    drop_disambiguation: bool
    disambiguation_re: re.Pattern
    url_base: str  # e.g. https://ko.wikipedia.org/wiki/
    max_page_chars: int = 5_000_000
    max_page_seconds: float = 0.0  # 0 = no limit

    @staticmethod
    def disambiguation_pattern(names) -> re.Pattern:
        alts = "|".join(_name_pattern(n) for n in names if n.strip())
        return re.compile(r"\{\{\s*(?:%s)\s*(?:\||\}\})" % (alts or "(?!)"), re.I)


@dataclass
class Page:
    id: int
    revid: int
    title: str
    ns: int
    redirect: bool
    text: str


@dataclass
class BatchResult:
    """What a worker sends back for one batch of pages, in dump order."""

    rows: list[tuple] = field(default_factory=list)  # (id, revid, url, title, text)
    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # pages over a budget: "page id N (title): why"
    page_ids: list[int | None] = field(default_factory=list)  # every <page> seen, for the index check
    bytes_in: int = 0


def page_id_of(raw: bytes) -> int | None:
    m = _FIRST_ID.search(raw)
    return int(m.group(1)) if m else None


def parse_page(raw: bytes) -> Page:
    try:
        el = ET.fromstring(raw)
    except ET.ParseError as e:
        raise PageError(f"malformed page XML ({e})") from None
    try:
        rev = el.find("revision")
        ns_text = el.findtext("ns")
        return Page(
            id=int(el.findtext("id")),
            revid=int(rev.findtext("id")) if rev is not None and rev.findtext("id") else 0,
            title=el.findtext("title") or "",
            ns=int(ns_text) if ns_text is not None else 0,
            redirect=el.find("redirect") is not None,
            text=(rev.findtext("text") if rev is not None else None) or "",
        )
    except (TypeError, ValueError) as e:
        raise PageError(f"page lacks a numeric <id>/<ns> ({e})") from None


def page_url(base: str, title: str) -> str:
    t = title.replace(" ", "_")
    for ch, enc in (("%", "%25"), ("?", "%3F"), ("#", "%23"), ('"', "%22")):
        t = t.replace(ch, enc)
    return base + t


def _skip(result: BatchResult, count: str, page: Page, why: str) -> None:
    """A page over a budget: counted under `count`, logged and named in result.skipped."""
    result.counts[count] += 1
    msg = f"page id {page.id} ({page.title}): {why}"
    log.warning("skipped %s", msg)
    result.skipped.append(msg)


def process_page(raw: bytes, cfg: PageConfig, result: BatchResult) -> None:
    """Add one page's row or drop reason to `result`."""
    pid = page_id_of(raw)
    result.page_ids.append(pid)
    result.counts["pages_read"] += 1
    try:
        page = parse_page(raw)
        if page.ns != 0:
            result.counts["dropped_namespace"] += 1
            return
        if page.redirect or _REDIRECT.match(page.text):
            result.counts["dropped_redirect"] += 1
            return
        if cfg.drop_disambiguation and cfg.disambiguation_re.search(page.text):
            result.counts["dropped_disambiguation"] += 1
            return
        if len(page.text) > cfg.max_page_chars:
            _skip(result, "dropped_too_large", page,
                  f"{len(page.text)} characters > extract_wiki.max_page_chars {cfg.max_page_chars}")
            return
        try:
            with time_budget(cfg.max_page_seconds):
                text = clean_wikitext(page.text, cfg.clean)
        except PageTimeout:
            _skip(result, "dropped_too_slow", page, f"cleaning took over extract_wiki.max_page_seconds "
                  f"{cfg.max_page_seconds:g} s ({len(page.text)} characters)")
            return
    except Exception as e:  # noqa: BLE001 - one bad page must not stop a 1.5 M page run; it is counted and named
        result.counts["parse_errors"] += 1
        msg = f"page id {pid}: {type(e).__name__}: {e}"
        log.warning("skipped %s", msg)
        result.errors.append(msg)
        return
    if len(text) < cfg.min_chars:
        result.counts["dropped_too_short"] += 1
        return
    result.counts["pages_kept"] += 1
    result.counts["chars_out"] += len(text)
    result.rows.append((page.id, page.revid, page_url(cfg.url_base, page.title), page.title, text))


def process_pages(raws: list[bytes], cfg: PageConfig) -> BatchResult:
    result = BatchResult()
    for raw in raws:
        result.bytes_in += len(raw)
        process_page(raw, cfg, result)
    return result
