"""Helpers for the extract_wiki tests: dumps built from the sample export, params with overrides."""
from __future__ import annotations

import bz2
import csv
import re
from pathlib import Path

from conftest import REPO_ROOT

from koblla.params import load_section
from koblla.wiki.multistream import write_multistream
from koblla.wiki.params import ExtractWikiParams
from koblla.wiki.sample import split_export

SAMPLE_XML = REPO_ROOT / "assets" / "kowiki_sample" / "kowiki-sample-pages-articles.xml"
MARKUP = re.compile(r"\{\{|\}\}|\[\[|\]\]|<ref|\{\||\|-|__[A-Z가-힣]+__|'''|<!--|\[https?:")


def sample_xml() -> bytes:
    return SAMPLE_XML.read_bytes()


def params(**overrides) -> ExtractWikiParams:
    """params.yaml's extract_wiki section with overrides (validated)."""
    base = load_section("extract_wiki", REPO_ROOT / "params.yaml").model_dump()
    return ExtractWikiParams.model_validate({**base, **overrides})


def multistream(tmp: Path, xml: bytes | None = None, per_stream: int = 5,
                name: str = "kowiki-test") -> tuple[Path, Path]:
    """Write xml (default: the sample) as a multistream dump + index under tmp; returns (dump, index)."""
    header, pages, footer = split_export(xml if xml is not None else sample_xml())
    dump = tmp / f"{name}-pages-articles-multistream.xml.bz2"
    index = tmp / f"{name}-pages-articles-multistream-index.txt.bz2"
    write_multistream(header, pages, footer, dump, index, pages_per_stream=per_stream)
    return dump, index


def single_stream(tmp: Path, xml: bytes | None = None) -> Path:
    path = tmp / "kowiki-test-pages-articles.xml.bz2"
    path.write_bytes(bz2.compress(xml if xml is not None else sample_xml()))
    return path


def read_rows(out_dir: Path, split: str = "train") -> list[dict]:
    with open(out_dir / f"{split}.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def all_rows(out_dir: Path) -> list[dict]:
    return [r for s in ("train", "dev", "test") for r in read_rows(out_dir, s)]


def csv_bytes(out_dir: Path) -> dict[str, bytes]:
    return {s: (out_dir / f"{s}.csv").read_bytes() for s in ("train", "dev", "test")}


def replace_page_text(xml: bytes, page_id: int, new_text: str) -> bytes:
    """Swap one page's <text> content (new_text is raw XML, so it can be made malformed on purpose)."""
    m = re.search(rb"<id>%d</id>.*?(<text[^>]*>)(.*?)(</text>)" % page_id, xml, re.S)
    assert m, page_id
    return xml[: m.start(2)] + new_text.encode("utf-8") + xml[m.end(2):]
