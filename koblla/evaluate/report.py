"""The seed's results table from the five flat metrics files: models x tasks, averages, deltas, retention, chart.

Reference models: Llama-3 for the base models, Llama-3-Inst. for the instruct models. A task's headline metric is
`acc` (lm-eval's default for multiple choice) except where HEADLINE_METRIC says otherwise; English and Korean
averages are plain means of the headline scores of the tasks of that language (koblla.evaluate.tasks.task_language).
"""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from koblla.atomic import atomic_file
from koblla.errors import InputError
from koblla.evaluate.tasks import task_language

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    key: str  # evaluate@<key>, metrics/eval/<key>.json
    label: str  # the seed's name for it
    kind: str
    reference: str | None  # key of the model it is compared against


MODELS = [
    ModelSpec("llama3", "Llama-3", "base", None),
    ModelSpec("koblla", "KoBLLa", "base", "llama3"),
    ModelSpec("llama3_inst", "Llama-3-Inst.", "instruct", None),
    ModelSpec("koblla_chatvec", "KoBLLa + ChatVec.", "instruct", "llama3_inst"),
    ModelSpec("koblla_inst", "KoBLLa-Inst.", "instruct", "llama3_inst"),
]
LABELS = {m.key: m.label for m in MODELS}
# HellaSwag-style tasks are scored length-normalised in the literature (and in the Open LLM Leaderboard).
HEADLINE_METRIC = {"kobest_hellaswag": "acc_norm", "haerae": "acc_norm", "hellaswag": "acc_norm"}
# KoBLLa's held-out losses (evals/ko_bpb.yaml ...): lower is better, shown in their own table, never averaged
# with accuracies.
LOSS_METRIC = {"ko_bpb": "bits_per_byte", "en_bpb": "bits_per_byte", "chat_nll_en": "nll_per_byte",
               "chat_nll_ko": "nll_per_byte"}
# The original KoBLLa's published TruthfulQA MC2 (the real run's comparison; ChatVec. had no published score).
PUBLISHED_MC2 = {"llama3": 0.4396, "koblla": 0.4304, "llama3_inst": 0.5170, "koblla_inst": 0.5144}
SMALL_N = 100  # documents: below this a task's stderr is wide; the report says so


def headline_metric(task: str) -> str:
    return LOSS_METRIC.get(task) or HEADLINE_METRIC.get(task.removesuffix("_local"), "acc")


def is_loss(task: str) -> bool:
    return task in LOSS_METRIC


def read_scores(metrics_dir: str | Path) -> dict[str, dict[str, float]]:
    """{model key: flat metrics} for the five models; a missing or malformed file is an error naming it."""
    out = {}
    for m in MODELS:
        path = Path(metrics_dir) / f"{m.key}.json"
        if not path.is_file():
            raise InputError(f"{path}: missing; run `dvc repro evaluate@{m.key}` first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
            raise InputError(f"{path}: expected a flat JSON object of numbers (written by stages.evaluate)")
        out[m.key] = data
    return out


def task_names(scores: dict[str, dict[str, float]]) -> list[str]:
    """Tasks with a headline score in any file: English first, then Korean, each by name."""
    tasks = set()
    for flat in scores.values():
        for key in flat:
            task, _, metric = key.partition("/")
            if task != "generations" and not is_loss(task) and metric == headline_metric(task):
                tasks.add(task)
    return sorted(tasks, key=lambda t: (task_language(t) != "en", t))


def loss_names(scores: dict[str, dict[str, float]]) -> list[str]:
    """The held-out loss measures present in any file, in LOSS_METRIC's order."""
    return [t for t in LOSS_METRIC if any(f"{t}/{LOSS_METRIC[t]}" in flat for flat in scores.values())]


def relative_change(value: float | None, ref: float | None) -> float | None:
    """(value - ref) / ref: for a loss, negative = better than the reference."""
    return (value - ref) / ref if value is not None and ref else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(scores: dict[str, dict[str, float]]) -> dict:
    """Per model: headline score per task, stderr, version, English and Korean averages, deltas vs reference."""
    tasks = task_names(scores)
    rows = {}
    for m in MODELS:
        flat = scores[m.key]
        per_task = {t: flat.get(f"{t}/{headline_metric(t)}") for t in tasks}
        rows[m.key] = {
            "scores": per_task,
            "stderr": {t: flat.get(f"{t}/{headline_metric(t)}_stderr") for t in tasks},
            "version": {t: flat.get(f"{t}/version") for t in tasks},
            "n": {t: flat.get(f"{t}/n") for t in tasks + loss_names(scores)},
            "loss": {t: flat.get(f"{t}/{LOSS_METRIC[t]}") for t in loss_names(scores)},
            "en": _mean([v for t, v in per_task.items() if v is not None and task_language(t) == "en"]),
            "ko": _mean([v for t, v in per_task.items() if v is not None and task_language(t) == "ko"]),
        }
    for m in MODELS:
        row, ref = rows[m.key], rows.get(m.reference) if m.reference else None
        row["delta"] = {
            lang: (row[lang] - ref[lang]) if ref and row[lang] is not None and ref[lang] is not None else None
            for lang in ("en", "ko")
        }
        row["loss_change"] = {
            t: relative_change(v, ref["loss"].get(t)) if ref else None for t, v in row["loss"].items()
        }
        row["task_delta"] = {
            t: (v - ref["scores"][t]) if ref and v is not None and ref["scores"][t] is not None else None
            for t, v in row["scores"].items()
        }
    return {"tasks": tasks, "losses": loss_names(scores), "rows": rows}


def _f(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _versions(summary: dict, task: str) -> str:
    vs = sorted({v for r in summary["rows"].values() if (v := r["version"][task]) is not None})
    return ", ".join(f"v{v}" for v in vs) if vs else "v?"


def _n(row: dict, task: str) -> str:
    n = row["n"].get(task)
    return f" (n={int(n)})" if n is not None else ""


def _caveats(summary: dict) -> list[str]:
    """Tasks scored on few documents, or whose stderr is wider than every difference between the models."""
    out = []
    rows = summary["rows"].values()
    for t in summary["tasks"] + summary["losses"]:
        ns = [r["n"][t] for r in rows if r["n"].get(t) is not None]
        if ns and max(ns) < SMALL_N:
            out.append(f"{t} saw only {int(max(ns))} document(s)")
            continue
        if t in summary["tasks"]:
            ses = [r["stderr"][t] for r in rows if r["stderr"][t] is not None]
            deltas = [abs(d) for r in rows if (d := r["task_delta"][t]) is not None]
            if ses and deltas and max(ses) > max(deltas):
                out.append(f"{t}: stderr {max(ses):.3f} is wider than the largest Δ {max(deltas):.3f}")
    return out


def _glance(r: dict) -> str:
    """Korean bpb gain %, English bpb change %, chat NLL change %, from the held-out losses (when measured)."""
    parts = []
    lc = r["loss_change"]
    if lc.get("ko_bpb") is not None:
        parts.append(f"Korean bpb gain {-100 * lc['ko_bpb']:+.1f} %")
    if lc.get("en_bpb") is not None:
        parts.append(f"English bpb change {100 * lc['en_bpb']:+.1f} %")
    for t, lang in (("chat_nll_en", "English"), ("chat_nll_ko", "Korean")):
        if lc.get(t) is not None:
            parts.append(f"{lang} chat NLL change {100 * lc[t]:+.1f} %")
    return "; ".join(parts)


def render_markdown(summary: dict, scores: dict[str, dict[str, float]]) -> str:
    tasks, rows = summary["tasks"], summary["rows"]
    out = io.StringIO()
    w = out.write
    w("# KoBLLa evaluation\n\n")
    w("Generated by `python -m stages.report` from `metrics/eval/*.json` (lm-eval; params.yaml `evaluate`). "
      "Each column shows the task's headline metric; the task's `metadata.version` is beside its name. "
      "Δ is against the reference model: Llama-3 for base models, Llama-3-Inst. for instruct models.\n\n")
    head = ["Model"] + [f"{t} ({headline_metric(t)}, {_versions(summary, t)}, {task_language(t)})" for t in tasks]
    head += ["English avg", "Korean avg", "Δ English", "Δ Korean"]
    mc2 = next((t for t in tasks if t.removesuffix("_local") == "truthfulqa_mc2"), None)
    if mc2:
        head += ["TruthfulQA MC2 published"]
    w("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    for m in MODELS:
        r = rows[m.key]
        cells = [m.label]
        for t in tasks:
            v, se = r["scores"][t], r["stderr"][t]
            cells.append(_f(v) + (f" ± {se:.3f}" if v is not None and se is not None else "") + _n(r, t))
        ref = m.reference is not None
        cells += [_f(r["en"]), _f(r["ko"]),
                  _f(r["delta"]["en"], True) if ref else "(ref)", _f(r["delta"]["ko"], True) if ref else "(ref)"]
        if mc2:
            cells.append(_f(PUBLISHED_MC2.get(m.key)))
        w("| " + " | ".join(cells) + " |\n")
    if mc2:
        w("\n\"TruthfulQA MC2 published\": the original KoBLLa's reported values, for the real run's comparison "
          "(the embedded default's tiny models are not comparable to them).\n")
    caveats = _caveats(summary)
    if caveats:
        w("\n**Caveat:** " + "; ".join(caveats) + ". Differences smaller than the stderr are noise.\n")

    losses = summary["losses"]
    if losses:
        w("\n## Held-out loss (lower is better)\n\n")
        w("Bits per byte of held-out Korean (`ko_bpb`: the extract stage's test split) and English (`en_bpb`) text, "
          "and NLL per byte (nats) of held-out assistant turns under the Llama 3 chat template (`chat_nll_en`, "
          "`chat_nll_ko`: the same conversations in English and Korean). n = documents (assistant turns for chat); "
          "the change is relative to the reference model (negative = better).\n\n")
        head = ["Model"] + [f"{t} ({LOSS_METRIC[t]})" for t in losses]
        w("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for m in MODELS:
            r = rows[m.key]
            cells = [m.label]
            for t in losses:
                change = r["loss_change"][t]
                rel = "(ref)" if m.reference is None else ("—" if change is None else f"{100 * change:+.1f} %")
                cells.append(f"{_f(r['loss'][t])}{_n(r, t)} {rel}")
            w("| " + " | ".join(cells) + " |\n")

    w("\n## Retention at a glance\n\n")
    w("For each Korean-trained model: did Korean improve, and did English survive, against its reference?\n\n")
    for m in MODELS:
        if m.reference is None:
            continue
        r, ref = rows[m.key], rows[m.reference]
        en, ko = r["delta"]["en"], r["delta"]["ko"]
        kept = (f" ({100 * r['en'] / ref['en']:.1f} % of the reference's English score)"
                if en is not None and ref["en"] else "")
        glance = _glance(r)
        w(f"- **{m.label}** vs {LABELS[m.reference]}: " + (f"held-out: {glance}; benchmarks: " if glance else "")
          + f"English Δ {_f(en, True)}{kept}; Korean Δ {_f(ko, True)}.\n")

    w("\n## Δ per task\n\n")
    head = ["Model (vs reference)"] + tasks
    w("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    for m in MODELS:
        if m.reference is None:
            continue
        w("| " + " | ".join([f"{m.label} (vs {LABELS[m.reference]})"]
                            + [_f(rows[m.key]["task_delta"][t], True) for t in tasks]) + " |\n")

    w("\n## Sample generations\n\n")
    w("Greedy answers to the fixed prompt set (params `evaluate.generation.prompts`), in "
      "`reports/generations/<model>.jsonl`. Korean prompts expect 존댓말 answers, 반말 questions included.\n\n")
    w("| Model | answers | Korean answers | register judged | in expected register |\n|---|---|---|---|---|\n")
    # (an answer with no Korean sentence to judge has formal_share null in the JSONL: not counted as judged)
    for m in MODELS:
        g = scores[m.key]
        cells = [g.get(f"generations/{k}") for k in ("n", "ko_n", "ko_register_judged", "ko_register_ok")]
        w(f"| {m.label} | " + " | ".join("—" if c is None else str(int(c)) for c in cells) + " |\n")
    return out.getvalue()


def plot_rows(summary: dict) -> list[dict]:
    """Long-format rows for the DVC bar plot: one per model x (task | average)."""
    out = []
    for m in MODELS:
        r = summary["rows"][m.key]
        for name, value in [*r["scores"].items(), ("English avg", r["en"]), ("Korean avg", r["ko"])]:
            if value is not None:
                out.append({"series": f"{m.label} | {name}", "model": m.label, "task": name, "score": round(value, 6)})
    return out


def render_chart(summary: dict, path: str | Path) -> None:
    """Grouped bar chart (PNG): one group per task and per language average, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = summary["tasks"] + ["English avg", "Korean avg"]
    n = len(MODELS)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups)), 4.2), dpi=120)
    for i, m in enumerate(MODELS):
        r = summary["rows"][m.key]
        vals = [r["scores"].get(g) if g in r["scores"] else r["en" if g == "English avg" else "ko"] for g in groups]
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, [v if v is not None else 0.0 for v in vals], width, label=m.label)
    ax.set_xticks(range(len(groups)), [g.replace("_", "_\u200b") for g in groups], fontsize=8)
    ax.set_ylabel("score (headline metric)")
    ax.set_ylim(0, 1)
    ax.set_title("KoBLLa: English retention and Korean gains")
    ax.legend(fontsize=7, ncols=min(n, 3))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def write_report(metrics_dir: str | Path, out_md: str | Path, out_png: str | Path,
                 out_plot_data: str | Path | None = None) -> dict:
    scores = read_scores(metrics_dir)
    summary = summarize(scores)
    if not summary["tasks"]:
        raise InputError(f"{metrics_dir}: no task scores found in the metrics files")
    with atomic_file(out_md) as f:
        f.write(render_markdown(summary, scores))
    render_chart(summary, out_png)
    if out_plot_data is not None:
        rows = plot_rows(summary)
        with atomic_file(out_plot_data) as f:
            wr = csv.DictWriter(f, fieldnames=["series", "model", "task", "score"], lineterminator="\n")
            wr.writeheader()
            wr.writerows(rows)
    return summary
