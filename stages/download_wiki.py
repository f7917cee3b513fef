"""Download a dated Korean Wikipedia dump (multistream + index), verify its checksums, resume if interrupted.

python -m stages.download_wiki --date 20240501 --out-dir data/raw

Not a DVC stage: run it once, then point params at the files it prints, e.g.
  dvc exp run -S extract_wiki.dump=data/raw/kowiki-20240501-pages-articles-multistream.xml.bz2 \\
              -S extract_wiki.index=data/raw/kowiki-20240501-pages-articles-multistream-index.txt.bz2
Dated folders are listed at https://dumps.wikimedia.org/kowiki/ (about 1 GB for kowiki). Use --base-url for a
mirror with the same layout. Run the same command again to resume an interrupted download.
"""
from __future__ import annotations

import sys

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.wiki.download import DEFAULT_BASE_URL, download_dump


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--date", required=True, help="dump date, YYYYMMDD (a folder under BASE_URL/WIKI/)")
    p.add_argument("--out-dir", default="data/raw", help="where to put the files (default: data/raw)")
    p.add_argument("--wiki", default="kowiki", help="wiki database name (default: kowiki)")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"dumps site or mirror (default: {DEFAULT_BASE_URL})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    dump, index = download_dump(a.date, a.out_dir, a.wiki, a.base_url, progress=not a.no_progress)
    print(f"download_wiki: verified {dump} ({dump.stat().st_size} bytes) and {index}")
    print(f"next: dvc exp run -S extract_wiki.dump={dump} -S extract_wiki.index={index}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
