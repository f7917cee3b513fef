"""Check params.yaml (every section, key and input path) before any other stage runs.

python -m stages.check_params --marker data/params_checked.txt

The first stage of dvc.yaml; every other stage depends on its marker file, so DVC runs this check first whenever
params.yaml changes and stops before it deletes any finished output when a param is wrong (koblla/preflight.py).
The marker's content is constant: a params change that passes reruns only the stages that use the changed params.
"""
from __future__ import annotations

import sys

from koblla.atomic import atomic_file
from koblla.cli import make_parser, run_stage, setup_logging
from koblla.preflight import MARKER_TEXT, check_params


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--marker", required=True, help="file written (constant content) when every check passes")
    p.add_argument("--dvc-yaml", default="dvc.yaml", help="pipeline file whose outputs count as existing inputs")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    sections = check_params(a.params, a.dvc_yaml)
    with atomic_file(a.marker) as f:
        f.write(MARKER_TEXT)
    print(f"check_params: {a.params} OK ({len(sections)} sections)")


if __name__ == "__main__":
    sys.exit(run_stage(main))
