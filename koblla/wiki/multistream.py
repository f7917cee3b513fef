"""Wikimedia's *-pages-articles-multistream.xml.bz2 layout: write it, and read its index.

Layout (what dumps.wikimedia.org publishes): one bz2 stream holding the XML header (`<mediawiki>` + `<siteinfo>`),
then one bz2 stream per block of pages (100 in real dumps), then one stream holding `</mediawiki>`. The companion
`*-multistream-index.txt.bz2` has one line per page, `OFFSET:PAGE_ID:TITLE`, where OFFSET is the byte offset of the
stream that holds the page. Each stream can be decompressed on its own, which is what makes parallel reading work.
"""
from __future__ import annotations

import bz2
import os
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from koblla.atomic import atomic_file
from koblla.errors import InputError

_PAGE_ID = re.compile(rb"<page>\s*<title>(.*?)</title>.*?<id>(\d+)</id>", re.S)


def index_path_for(dump: str | os.PathLike) -> Path:
    """kowiki-...-multistream.xml.bz2 -> kowiki-...-multistream-index.txt.bz2 (Wikimedia's naming)."""
    s = str(dump)
    if not s.endswith(".xml.bz2"):
        raise InputError(f"{s}: a multistream dump name ends with .xml.bz2 (Wikimedia's naming); rename it or name "
                         "its index explicitly")
    return Path(s[: -len(".xml.bz2")] + "-index.txt.bz2")


def write_multistream(
    header: bytes,
    pages: Iterable[bytes],
    footer: bytes,
    out: str | os.PathLike,
    index_out: str | os.PathLike | None = None,
    pages_per_stream: int = 100,
    compresslevel: int = 9,
) -> int:
    """Write `pages` (each one `<page>...</page>` element, UTF-8) as a multistream dump plus its index, atomically.

    Deterministic: the same input gives the same bytes (bz2 has no timestamps). Returns the number of pages.
    """
    if pages_per_stream < 1:
        raise ValueError("pages_per_stream must be >= 1")
    index_out = Path(index_out) if index_out is not None else index_path_for(out)
    index_lines: list[str] = []
    n = 0
    with atomic_file(out, "wb") as f:
        f.write(bz2.compress(header, compresslevel))
        block: list[bytes] = []

        def flush() -> None:
            offset = f.tell()
            for p in block:
                m = _PAGE_ID.search(p)
                if m is None:
                    raise InputError(f"page {p[:80]!r}...: no <title> and <id> found")
                index_lines.append(f"{offset}:{int(m.group(2))}:{m.group(1).decode('utf-8')}\n")
            f.write(bz2.compress(b"".join(block), compresslevel))
            block.clear()

        for p in pages:
            block.append(p)
            n += 1
            if len(block) == pages_per_stream:
                flush()
        if block:
            flush()
        f.write(bz2.compress(footer, compresslevel))
    with atomic_file(index_out, "wb") as f:
        f.write(bz2.compress("".join(index_lines).encode("utf-8"), compresslevel))
    return n


@dataclass
class Stream:
    """One bz2 stream of pages: where it starts, where the next one starts (None: unknown), its page ids.

    Ids are kept in an int64 array (8 bytes each, ~12 MB for kowiki's 1.5 M pages; a list of ints is ~5x that).
    """

    offset: int
    end: int | None
    page_ids: array = field(default_factory=lambda: array("q"))


def read_index(index: str | os.PathLike, dump_size: int | None = None) -> list[Stream]:
    """Parse a multistream index into streams in file order; malformed lines are errors naming the line."""
    index = Path(index)
    streams: list[Stream] = []
    try:
        with bz2.open(index, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line:
                    continue
                parts = line.split(":", 2)
                if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
                    raise InputError(f"{index}:{lineno}: expected OFFSET:PAGE_ID:TITLE, got {line[:100]!r}")
                offset, pid = int(parts[0]), int(parts[1])
                if streams and offset == streams[-1].offset:
                    streams[-1].page_ids.append(pid)
                elif streams and offset < streams[-1].offset:
                    raise InputError(f"{index}:{lineno}: offset {offset} goes backwards "
                                     "(index is not sorted or corrupt)")
                else:
                    streams.append(Stream(offset, None, array("q", [pid])))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"{index}: cannot read the multistream index ({e}); re-download it") from e
    for a, b in pairwise(streams):
        a.end = b.offset
    past = next((s for s in streams if s.offset >= dump_size), None) if dump_size is not None else None
    if past is not None:
        raise InputError(
            f"{index}: offset {past.offset} (page id {past.page_ids[0]}) is past the end of the dump "
            f"({dump_size} bytes): the dump is truncated, or the index belongs to another dump; re-download both"
        )
    return streams
