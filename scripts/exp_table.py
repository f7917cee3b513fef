"""Experiments at a glance: one row per experiment, only the params that differ, the headline metrics.

python scripts/exp_table.py            (or `make exps`; extra arguments go to `dvc exp show`, e.g. -A)

Reads `dvc exp show --json` (the workspace, HEAD and its experiments, queued ones included) and prints a table at
most 150 columns wide: experiment name and state, every params.yaml value that is not the same in all rows, then
the final model's scores (metrics/eval/koblla_inst.json: each task's acc) and the training losses.
`dvc exp show` itself lists every param and metric (hundreds of columns).
"""
from __future__ import annotations

import json
import subprocess
import sys

WIDTH = 150
HEADLINE = [  # (column, metrics file, key)
    ("base_loss_ko", "metrics/finetune_base.json", "heldout_loss_ko"),
    ("inst_loss", "metrics/finetune_instruct.json", "final_loss"),
]
FINAL_EVAL = "metrics/eval/koblla_inst.json"


def _flat(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _rows(entries):
    for e in entries:
        data = e.get("data") or {}
        yield (e.get("name") or (e["rev"] if e["rev"] == "workspace" else e["rev"][:7])), "", data
        for exp in e.get("experiments") or []:
            state = ((exp.get("executor") or {}).get("state") or "").lower()
            for rev in exp.get("revs") or []:
                yield (rev.get("name") or exp.get("name") or rev["rev"][:7]), state, (rev.get("data") or {})


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    s = json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else str(v)
    return s if len(s) <= 24 else s[:23] + "…"


def table(entries) -> list[str]:
    rows = []
    for name, state, data in _rows(entries):
        params = _flat(((data.get("params") or {}).get("params.yaml") or {}).get("data"))
        metrics = {f: (m or {}).get("data") or {} for f, m in (data.get("metrics") or {}).items()}
        rows.append((name, state, params, metrics))
    keys = sorted({k for _, _, p, _ in rows for k in p})
    changed = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for _, _, p, _ in rows}) > 1]
    tasks = sorted({k for _, _, _, m in rows for k in m.get(FINAL_EVAL, {}) if k.endswith("/acc")})
    header = ["experiment", "state", *changed, *(t.split("/")[0].removesuffix("_local") for t in tasks),
              *(c for c, _, _ in HEADLINE)]
    body = []
    for name, state, p, m in rows:
        body.append([name, state, *(_fmt(p.get(k)) for k in changed),
                     *(_fmt(m.get(FINAL_EVAL, {}).get(t)) for t in tasks),
                     *(_fmt(m.get(f, {}).get(k)) for _, f, k in HEADLINE)])
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    keep, used = [], 0
    for i, w in enumerate(widths):  # leftmost columns first; drop what would pass WIDTH
        if used + w + (2 if keep else 0) > WIDTH:
            continue
        keep.append(i)
        used += w + (2 if len(keep) > 1 else 0)
    return ["  ".join(str(r[i]).ljust(widths[i]) for i in keep).rstrip() for r in [header, *body]]


def main() -> int:
    r = subprocess.run(["dvc", "exp", "show", "--json", *sys.argv[1:]], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return r.returncode
    print("\n".join(table(json.loads(r.stdout))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
