"""Build the embedded default's multistream dump from the hand-written export in assets/kowiki_sample/."""
from __future__ import annotations

import os
from pathlib import Path

from koblla.errors import InputError
from koblla.wiki.dump import split_pages
from koblla.wiki.multistream import write_multistream


def split_export(xml: bytes, name: str = "dump") -> tuple[bytes, list[bytes], bytes]:
    """A MediaWiki XML export -> (header up to the first page, pages, footer after the last page)."""
    first, last = xml.find(b"<page>"), xml.rfind(b"</page>")
    if first < 0 or last < 0:
        raise InputError(f"{name}: no <page> elements found")
    pages, rest = split_pages(xml, first)
    if rest != last + len(b"</page>"):
        raise InputError(f"{name}: an unterminated <page> near byte {rest}")
    header, footer = xml[:first], xml[rest:]
    # Multistream page streams hold whole lines ("  <page>...</page>\n"), like Wikimedia's.
    indent = header[len(header.rstrip(b" ")):]
    header = header[: len(header) - len(indent)]
    return header, [indent + p + b"\n" for p in pages], footer.lstrip(b"\n")


def make_sample_dump(src: str | os.PathLike, out: str | os.PathLike, index_out: str | os.PathLike,
                     pages_per_stream: int = 5) -> int:
    """Every *.xml export under `src` (sorted by name; the first one's header) -> one multistream dump + index.

    Returns the number of pages written. Deterministic: same assets, same bytes.
    """
    src = Path(src)
    files = sorted(src.glob("*.xml")) if src.is_dir() else [src]
    if not files:
        raise InputError(f"{src}: no *.xml MediaWiki export found")
    header, footer, pages = b"", b"", []
    for i, f in enumerate(files):
        h, p, t = split_export(f.read_bytes(), str(f))
        if i == 0:
            header, footer = h, t
        pages.extend(p)
    return write_multistream(header, pages, footer, out, index_out, pages_per_stream=pages_per_stream)
