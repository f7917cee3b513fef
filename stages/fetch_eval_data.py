"""Fill the local HF datasets cache for every lm-eval task in params evaluate.tasks, then verify it offline.

python -m stages.fetch_eval_data

Not a DVC stage: run it once on a machine with network (and HF_TOKEN for gated sets) before the real run's
`dvc repro`; groups such as kmmlu and haerae are expanded to all their subsets. The evaluate stage then finds the
data offline (HF_DATASETS_OFFLINE=1) and checks every task's data before any model loads. Local tasks (evals/)
read files of ours and need nothing.
"""
from __future__ import annotations

import sys

from koblla.cli import make_parser, run_stage, setup_logging
from koblla.params import load_section


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--check-only", action="store_true", help="only verify the cache (no network)")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    params = load_section("evaluate", a.params)

    from koblla.evaluate.hubdata import check_cached, fetch_all, hub_datasets
    from koblla.evaluate.tasks import make_task_manager

    tm = make_task_manager(params.tasks, params.evals_dir)
    wanted = hub_datasets(tm, params.tasks, params.evals_dir)
    if a.check_only:
        check_cached(wanted)
        print(f"{len(wanted)} built-in tasks: data cached")
    else:
        n = fetch_all(wanted)
        print(f"{len(wanted)} built-in tasks, {n} datasets fetched and verified offline")


if __name__ == "__main__":
    sys.exit(run_stage(main))
