"""Time koblla.wiki.clean.clean_wikitext on pages of unclosed markup, at N and 10 N openers.

python benchmarks/wiki_clean_pathological.py            (from the repo root; no arguments)

Linear cleaning shows a ratio near 10 between the two sizes (quadratic passes show ~100). One run each, on a
possibly shared machine. The last line is one JSON object: seconds per case and size, and the worst ratio.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from koblla.wiki.clean import CleanConfig, clean_wikitext  # noqa: E402

CASES = {
    "unclosed_ref": "본문 <ref>출처 ",
    "ref_without_gt": "본문 <ref name=x ",
    "unclosed_template": "본문 {{틀|",
    "template_with_link": "본문 {{틀|[[링크]] ",
    "unclosed_link": "본문 [[링크|{{틀 ",
    "unclosed_math": "본문 <math>x ",
    "unclosed_nowiki": "본문 <nowiki>x ",
    "mixed": "본문 <ref>{{a|[[b|<math>c ",
}
SIZES = (10_000, 100_000)


def main() -> None:
    cfg = CleanConfig.build(["lang"], ["각주"], False)
    clean_wikitext("warm {{up}} [[x]]", cfg)
    result: dict = {}
    ratios = []
    for name, unit in CASES.items():
        times = []
        for n in SIZES:
            t0 = time.perf_counter()
            clean_wikitext(unit * n, cfg)
            times.append(time.perf_counter() - t0)
            result[f"{name}_{n}_s"] = round(times[-1], 3)
        ratios.append(times[1] / max(times[0], 1e-6))
        print(f"{name}: {SIZES[0]} openers {times[0]:.3f} s, {SIZES[1]} openers {times[1]:.3f} s "
              f"(ratio {ratios[-1]:.1f})", flush=True)
    result["worst_ratio_10x_size"] = round(max(ratios), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
