"""Extract clean article text from a MediaWiki dump into train/dev/test CSVs.

python -m stages.extract_wiki --out-dir data/kowiki --metrics metrics/extract_wiki.json

Reads params.yaml's extract_wiki section: `dump` (kowiki-YYYYMMDD-pages-articles-multistream.xml.bz2, or a
single-stream .xml.bz2, or a plain .xml) and `index` (its -index.txt.bz2; "" reads the dump front to back).
Writes OUT_DIR/{train,dev,test}.csv with columns id, revid, url, title, text (loadable by torchtune's
text_completion_dataset(source="csv", column="text")) and a metrics JSON (pages read/kept/dropped by reason).

Real dump (see docs/extract_wiki.md):
  python -m stages.download_wiki --date 20240501 --out-dir data/raw
  dvc exp run -S extract_wiki.dump=data/raw/kowiki-20240501-pages-articles-multistream.xml.bz2 \\
              -S extract_wiki.index=data/raw/kowiki-20240501-pages-articles-multistream-index.txt.bz2
"""
from __future__ import annotations

import signal
import sys

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.params import load_section
from koblla.wiki.extract import extract_wiki


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--out-dir", required=True, help="folder for train.csv, dev.csv, test.csv (replaced atomically)")
    p.add_argument("--metrics", required=True, help="metrics JSON to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    params = load_section("extract_wiki", a.params)
    # SIGTERM (dvc, a job scheduler, `kill`) unwinds like Ctrl-C: workers are killed, the temp output removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    m = extract_wiki(params, a.out_dir, a.metrics, progress=not a.no_progress)
    dropped = ", ".join(f"{k} {v}" for k, v in m["dropped"].items())
    print(
        f"extract_wiki: {m['pages_read']} pages read, {m['pages_kept']} kept "
        f"(train {m['rows']['train']}, dev {m['rows']['dev']}, test {m['rows']['test']}), "
        f"dropped: {dropped}, parse errors {m['parse_errors']}, {m['chars_out']} characters out -> {a.out_dir}"
    )


if __name__ == "__main__":
    sys.exit(run_stage(main))
