"""Read a MediaWiki XML dump as batches of raw `<page>` elements, streaming, in bounded memory.

Two ways in: a multistream dump with its index (each bz2 stream is decompressed on its own, so workers can take
streams in parallel), or any dump read front to back (`.xml`, single-stream or multistream `.xml.bz2`), cut into
batches by the main process. `<page>` and `</page>` can only be markup in a dump (text has `<` escaped as `&lt;`),
so cutting on them is exact without an XML parser; each page is parsed on its own later, so one malformed page
costs one page, not the run.
"""
from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from koblla.errors import InputError
from koblla.wiki.multistream import Stream

READ_CHUNK = 1 << 20  # bytes of compressed input per read
BATCH_BYTES = 1 << 20  # bytes of page XML per batch handed to a worker (sequential mode)
BATCH_PAGES = 100  # ... or this many pages, whichever comes first (real multistream dumps use 100 per stream)


@dataclass
class SiteInfo:
    base_url: str = "https://ko.wikipedia.org/wiki/"
    lang: str = "ko"
    namespaces: dict[int, list[str]] = field(default_factory=dict)


def parse_siteinfo(header: bytes, path: Path) -> SiteInfo:
    """Site base URL and namespace names from the dump header (`<mediawiki ...><siteinfo>...</siteinfo>`)."""
    if b"<mediawiki" not in header:
        raise InputError(f"{path}: does not start like a MediaWiki XML dump (no <mediawiki> element)")
    info = SiteInfo()
    m = re.search(rb'xml:lang="([^"]+)"', header)
    if m:
        info.lang = m.group(1).decode()
        info.base_url = f"https://{info.lang}.wikipedia.org/wiki/"
    s, e = header.find(b"<siteinfo>"), header.find(b"</siteinfo>")
    if s < 0 or e < 0:
        return info  # old or hand-made dumps may lack siteinfo: defaults hold
    try:
        el = ET.fromstring(header[s:e + len(b"</siteinfo>")])
    except ET.ParseError as err:
        raise InputError(f"{path}: malformed <siteinfo> in the dump header ({err})") from None
    base = el.findtext("base") or ""
    if "/wiki/" in base:
        info.base_url = base[: base.index("/wiki/") + len("/wiki/")]
    for ns in el.iter("namespace"):
        if ns.get("key") is not None and ns.text:
            info.namespaces.setdefault(int(ns.get("key")), []).append(ns.text)
    return info


def _decompress_stream(path: Path, stream: Stream) -> tuple[bytes, int]:
    """Decompress the one bz2 stream at stream.offset; returns (data, offset just past the stream)."""
    ids = f"page ids {stream.page_ids[0]}..{stream.page_ids[-1]}" if stream.page_ids else "header"
    dec = bz2.BZ2Decompressor()
    out: list[bytes] = []
    pos = stream.offset
    with open(path, "rb") as f:
        f.seek(stream.offset)
        try:
            while not dec.eof:
                n = READ_CHUNK if stream.end is None else min(READ_CHUNK, stream.end - pos)
                chunk = f.read(n) if n > 0 else b""
                if not chunk:
                    where = "the end of the file" if stream.end is None else f"offset {stream.end} (next index entry)"
                    raise InputError(
                        f"{path}: bz2 stream at offset {stream.offset} ({ids}) is cut off at {where}: the dump is "
                        "truncated or the index does not match it; re-download both (stages/download_wiki.py)"
                    )
                pos += len(chunk)
                out.append(dec.decompress(chunk))
        except OSError as e:
            raise InputError(
                f"{path}: corrupt bz2 data in the stream at offset {stream.offset} ({ids}): {e}. "
                "If this is the first stream of the index, the index does not belong to this dump; "
                "otherwise the dump is damaged: re-download it (stages/download_wiki.py verifies checksums)"
            ) from None
    end = pos - len(dec.unused_data)
    if stream.end is not None and end != stream.end:
        raise InputError(
            f"{path}: the bz2 stream at offset {stream.offset} ({ids}) ends at byte {end}, but the index says the "
            f"next stream starts at {stream.end}: the index does not match this dump"
        )
    return b"".join(out), end


def split_pages(buf: bytes, pos: int = 0) -> tuple[list[bytes], int]:
    """Complete `<page>...</page>` elements in buf from pos on; returns them and where the unread rest starts."""
    pages = []
    while True:
        s = buf.find(b"<page>", pos)
        if s < 0:
            return pages, pos
        e = buf.find(b"</page>", s)
        if e < 0:
            return pages, s
        pages.append(buf[s:e + 7])
        pos = e + 7


def read_stream_pages(path: Path, stream: Stream) -> tuple[list[bytes], int]:
    """The pages of one multistream stream, checked against the index; returns (pages, end offset)."""
    data, end = _decompress_stream(path, stream)
    pages, rest = split_pages(data)
    if data[rest:].strip():
        raise InputError(
            f"{path}: stream at offset {stream.offset} holds text that is not a complete <page> "
            f"({data[rest:rest + 60]!r}...): the index does not match this dump, or the stream is damaged"
        )
    return pages, end


def read_multistream_header(path: Path, first_offset: int) -> bytes:
    header, end = _decompress_stream(path, Stream(0, first_offset))
    if b"<page>" in header:
        raise InputError(f"{path}: the first bz2 stream already holds pages: the index does not match this dump")
    return header


def check_multistream_footer(path: Path, offset: int) -> None:
    """After the last indexed stream only `</mediawiki>` may follow: more pages mean the index is incomplete."""
    tail = b""
    with open(path, "rb") as raw:
        raw.seek(offset)
        try:
            with bz2.BZ2File(raw) as f:
                tail = f.read(1 << 16)
        except (OSError, EOFError) as e:
            raise InputError(
                f"{path}: damaged bz2 data after the last indexed stream (offset {offset}): {e}; re-download it"
            ) from None
    if b"<page>" in tail:
        raise InputError(
            f"{path}: pages follow the last stream listed in the index (offset {offset} on, page id "
            f"{_first_id(tail)}): the index does not match this dump (use the index published with it)"
        )
    if b"</mediawiki>" not in tail:
        raise InputError(
            f"{path}: no </mediawiki> after the last indexed stream (offset {offset}): the dump is truncated; "
            "re-download it"
        )


@dataclass
class SequentialReader:
    """Front-to-back reader for `.xml`, `.xml.bz2` (single or multistream). Iterate for batches of pages."""

    path: Path
    batch_bytes: int = BATCH_BYTES
    batch_pages: int = BATCH_PAGES
    header: bytes = b""
    compressed_pos: int = 0  # bytes of the file consumed so far (for the MB/s progress)

    def __post_init__(self):
        self._raw = open(self.path, "rb")
        magic = self._raw.read(3)
        self._raw.seek(0)
        if not magic:
            self._raw.close()
            raise InputError(f"{self.path}: the dump file is empty (0 bytes); re-download it")
        self._f = bz2.BZ2File(self._raw) if magic == b"BZh" else self._raw
        self._buf = b""
        self._eof = False
        while b"<page>" not in self._buf and not self._eof:
            self._fill()
        cut = self._buf.find(b"<page>")
        if cut < 0:  # no pages at all: keep the end so the </mediawiki> check still sees it
            self.header, self._buf = self._buf, self._buf[-64:]
        else:
            self.header, self._buf = self._buf[:cut], self._buf[cut:]
        if not self.header.strip():
            raise InputError(f"{self.path}: no MediaWiki XML header found (is this a pages-articles dump?)")

    def _fill(self) -> None:
        try:
            chunk = self._f.read(READ_CHUNK)
        except EOFError:
            raise InputError(
                f"{self.path}: the bz2 data ends early (compressed byte {self._raw.tell()}): the download is "
                "truncated; re-download it (stages/download_wiki.py resumes and verifies)"
            ) from None
        except OSError as e:
            raise InputError(
                f"{self.path}: corrupt bz2 data near compressed byte {self._raw.tell()} ({e}); re-download it"
            ) from None
        self.compressed_pos = self._raw.tell()
        if chunk:
            self._buf += chunk
        else:
            self._eof = True

    def __iter__(self) -> Iterator[list[bytes]]:
        try:
            batch, size = [], 0
            while True:
                pages, rest = split_pages(self._buf)
                self._buf = self._buf[rest:]
                for p in pages:
                    batch.append(p)
                    size += len(p)
                    if len(batch) >= self.batch_pages or size >= self.batch_bytes:
                        yield batch
                        batch, size = [], 0
                if self._eof:
                    break
                self._fill()
            if batch:
                yield batch
            tail = self._buf.strip()
            if tail.startswith(b"<page>"):
                raise InputError(
                    f"{self.path}: the XML ends inside a page (page id "
                    f"{_first_id(tail)}): the dump is truncated; re-download it"
                )
            if not tail.endswith(b"</mediawiki>"):
                raise InputError(
                    f"{self.path}: the XML does not end with </mediawiki> (ends with {tail[-60:]!r}): "
                    "the dump is truncated or damaged; re-download it"
                )
        finally:
            self.close()

    def close(self) -> None:
        self._f.close()
        self._raw.close()


def _first_id(raw: bytes) -> str:
    m = re.search(rb"<id>\s*(\d+)\s*</id>", raw)
    return m.group(1).decode() if m else "unknown"
