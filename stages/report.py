"""Build the seed's results table and chart from the evaluated models' lm-eval metrics.

python -m stages.report --metrics-dir metrics/eval --out reports/results.md --plot reports/results.png \
    --plot-data reports/results_plot.csv

Reads metrics/eval/<model>.json (written by stages.evaluate) for every model of dvc.yaml's evaluate foreach, in its
order, with its label and reference, and writes a markdown table (models x tasks with each task's version, English
and Korean averages, Δ vs the reference model: Llama-3 for base models, Llama-3-Inst. for instruct models), a
"retention at a glance" section, a bar chart PNG, and optionally the chart's data as CSV for `dvc plots show`.
"""
import sys

from koblla.cli import make_parser, run_stage, setup_logging


def main(argv=None):
    p = make_parser(__doc__)
    p.add_argument("--metrics-dir", default="metrics/eval", help="folder of <model>.json flat metrics")
    p.add_argument("--out", default="reports/results.md", help="markdown report to write")
    p.add_argument("--plot", default="reports/results.png", help="bar chart PNG to write")
    p.add_argument("--plot-data", default=None, help="CSV of the chart's numbers (for dvc plots)")
    p.add_argument("--dvc-yaml", default="dvc.yaml", help="pipeline file whose evaluate foreach lists the models")
    a = p.parse_args(argv)
    setup_logging(a.verbose)

    from koblla.evaluate.report import write_report

    summary = write_report(a.metrics_dir, a.out, a.plot, a.plot_data, a.dvc_yaml)
    models = summary["models"]
    print(f"report: {len(models)} models x {len(summary['tasks'])} tasks -> {a.out}, {a.plot}"
          + (f", {a.plot_data}" if a.plot_data else ""))
    for m in models:
        if m.reference:
            d = summary["rows"][m.key]["delta"]
            fmt = lambda v: "n/a" if v is None else f"{v:+.4f}"  # noqa: E731
            losses = "".join(f", {t} {100 * v:+.1f} %" for t, v in summary["rows"][m.key]["loss_change"].items()
                             if v is not None)
            print(f"  {m.label}: English Δ {fmt(d['en'])}, Korean Δ {fmt(d['ko'])}{losses}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
