"""params.yaml section `extract_wiki`: where the dump is and how its articles are cleaned and split."""
from __future__ import annotations

from pydantic import Field, model_validator

from koblla.params import Section


class SplitParams(Section):
    """Fractions of articles (by hash of page id) that go to dev and test; the rest is train."""

    dev: float = Field(ge=0.0, lt=1.0)
    test: float = Field(ge=0.0, lt=1.0)


class ExtractWikiParams(Section):
    """Values live in params.yaml only (no defaults here, so the two cannot drift)."""

    # Default: the sample dump built by make_sample_dump; real run: kowiki-YYYYMMDD-pages-articles-multistream.xml.bz2
    dump: str
    # Multistream index (offset:id:title, bz2); "" reads the dump sequentially (single-stream .xml.bz2 or .xml).
    index: str
    workers: int = Field(ge=0)  # 0 = one worker process per core
    min_chars: int = Field(ge=0)  # articles shorter than this (characters, after cleaning) are dropped
    drop_disambiguation: bool
    # Templates whose presence marks a disambiguation page (matched case-insensitively, `_` = space).
    disambiguation_templates: list[str]
    keep_headings: bool  # true: section headings stay as their own line of text
    drop_sections: list[str]  # section titles (spaces and markup ignored when matching)
    # Templates whose positional arguments are prose (a leading language code is dropped): {{lang|en|Seoul}} -> Seoul
    keep_templates: list[str]
    split: SplitParams
    # Budgets against pathological pages: a page over either is skipped, counted and named in the metrics.
    max_page_chars: int = Field(ge=1)  # wikitext characters of one page
    max_page_seconds: float = Field(ge=0)  # cleaning time of one page; 0 = no limit
    # Share of pages that may fail to parse (malformed XML, no numeric id, ...) before the stage fails: a dump
    # damaged or re-encoded wrongly must not end in a silently thinner corpus.
    max_parse_error_share: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> ExtractWikiParams:
        if self.split.dev + self.split.test >= 1.0:
            raise ValueError(
                f"split.dev + split.test must be < 1 so train gets articles (got {self.split.dev} + {self.split.test})"
            )
        return self
