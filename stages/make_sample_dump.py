"""Build the embedded default's Korean Wikipedia dump: a small multistream .xml.bz2 plus its index.

python -m stages.make_sample_dump --src assets/kowiki_sample \\
    --out data/raw/kowiki-sample-pages-articles-multistream.xml.bz2 \\
    --index data/raw/kowiki-sample-pages-articles-multistream-index.txt.bz2

The hand-written export in assets/kowiki_sample/ (real MediaWiki export format: siteinfo, namespaces, redirects,
templates, refs, tables...) is laid out like Wikimedia's kowiki-*-pages-articles-multistream.xml.bz2, with
--pages-per-stream pages per bz2 stream (Wikimedia uses 100; 5 here so the default run has several streams).
The output is byte-for-byte deterministic.
"""
from __future__ import annotations

import sys

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.wiki.multistream import index_path_for
from koblla.wiki.sample import make_sample_dump


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--src", required=True, help="folder holding *.xml MediaWiki exports (or one file)")
    p.add_argument("--out", required=True, help="multistream dump to write (.xml.bz2)")
    p.add_argument("--index", help="index to write (default: Wikimedia's name beside --out)")
    p.add_argument("--pages-per-stream", type=int, default=5, help="pages per bz2 stream (default: 5)")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    index = a.index or index_path_for(a.out)
    n = make_sample_dump(a.src, a.out, index, pages_per_stream=a.pages_per_stream)
    streams = -(-n // a.pages_per_stream)
    print(f"make_sample_dump: {n} pages in {streams} streams -> {a.out} (+ index {index})")


if __name__ == "__main__":
    sys.exit(run_stage(main))
