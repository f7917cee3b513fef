"""report: the seed's table from five flat metrics files (synthetic numbers, exact expectations)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from koblla.errors import InputError
from koblla.evaluate.report import MODELS, read_scores, summarize, write_report

SCORES = {  # model -> (truthfulqa_mc2, kobest_copa, kobest_hellaswag acc_norm)
    "llama3": (0.44, 0.60, 0.50),
    "koblla": (0.42, 0.70, 0.60),
    "llama3_inst": (0.52, 0.62, 0.52),
    "koblla_chatvec": (0.50, 0.72, 0.56),
    "koblla_inst": (0.53, 0.75, 0.61),
}

LOSSES = {  # model -> (ko_bpb, en_bpb, chat_nll_ko): lower is better
    "llama3": (4.0, 2.0, 2.0),
    "koblla": (3.0, 2.2, 1.9),
    "llama3_inst": (4.0, 2.0, 1.0),
    "koblla_chatvec": (3.2, 2.1, 1.2),
    "koblla_inst": (2.8, 2.1, 0.8),
}


def _write(metrics_dir, skip=()):
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for key, (tqa, copa, hella) in SCORES.items():
        if key in skip:
            continue
        flat = {
            "truthfulqa_mc2/acc": tqa, "truthfulqa_mc2/acc_stderr": 0.017, "truthfulqa_mc2/version": 3.0,
            "truthfulqa_mc2/n": 817.0,
            "kobest_copa/acc": copa, "kobest_copa/acc_stderr": 0.015, "kobest_copa/f1": copa - 0.01,
            "kobest_copa/version": 1.0,
            "kobest_hellaswag/acc": 0.1, "kobest_hellaswag/acc_norm": hella, "kobest_hellaswag/version": 1.0,
            "generations/n": 7.0, "generations/ko_n": 5.0, "generations/ko_register_judged": 4.0,
            "generations/ko_register_ok": 3.0,
        }
        ko_bpb, en_bpb, chat_ko = LOSSES[key]
        flat.update({"ko_bpb/bits_per_byte": ko_bpb, "ko_bpb/n": 1.0, "en_bpb/bits_per_byte": en_bpb,
                     "en_bpb/n": 6.0, "chat_nll_ko/nll_per_byte": chat_ko, "chat_nll_ko/n": 8.0})
        (metrics_dir / f"{key}.json").write_text(json.dumps(flat))


def test_summary_numbers(tmp_path):
    _write(tmp_path)
    s = summarize(read_scores(tmp_path))
    assert s["tasks"] == ["truthfulqa_mc2", "kobest_copa", "kobest_hellaswag"]  # English first
    rows = s["rows"]
    assert rows["koblla"]["en"] == pytest.approx(0.42) and rows["koblla"]["ko"] == pytest.approx(0.65)
    assert rows["koblla"]["delta"]["en"] == pytest.approx(-0.02)  # vs Llama-3
    assert rows["koblla"]["delta"]["ko"] == pytest.approx(0.65 - 0.55)
    assert rows["koblla_inst"]["delta"]["en"] == pytest.approx(0.01)  # vs Llama-3-Inst.
    assert rows["koblla_inst"]["task_delta"]["kobest_hellaswag"] == pytest.approx(0.09)  # acc_norm, not acc
    assert rows["llama3"]["delta"] == {"en": None, "ko": None}
    assert s["losses"] == ["ko_bpb", "en_bpb", "chat_nll_ko"]  # never averaged with the accuracies
    assert rows["koblla"]["loss_change"]["ko_bpb"] == pytest.approx(-0.25)


def test_report_files(tmp_path):
    _write(tmp_path / "m")
    write_report(tmp_path / "m", tmp_path / "r/results.md", tmp_path / "r/results.png", tmp_path / "r/plot.csv")
    md = (tmp_path / "r/results.md").read_text(encoding="utf-8")
    for m in MODELS:
        assert f"| {m.label} |" in md
    assert "truthfulqa_mc2 (acc, v3.0, en)" in md and "kobest_hellaswag (acc_norm, v1.0, ko)" in md
    assert ("| KoBLLa | 0.4200 ± 0.017 (n=817) | 0.7000 ± 0.015 | 0.6000 | 0.4200 | 0.6500 | -0.0200 | +0.1000 "
            "| 0.4304 |") in md
    # no published MC2
    assert "| KoBLLa + ChatVec. | 0.5000 ± 0.017 (n=817) " in md and "| -0.0200 | +0.0700 | — |" in md
    assert ("- **KoBLLa** vs Llama-3: held-out: Korean bpb gain +25.0 %; English bpb change +10.0 %; "
            "Korean chat NLL change -5.0 %; benchmarks: English Δ -0.0200 (95.5 % of the reference's English score); "
            "Korean Δ +0.1000.") in md
    assert "- **KoBLLa-Inst.** vs Llama-3-Inst.: held-out: Korean bpb gain +30.0 %" in md
    assert "| KoBLLa-Inst. | 2.8000 (n=1) -30.0 % | 2.1000 (n=6) +5.0 % | 0.8000 (n=8) -20.0 % |" in md
    assert "| Llama-3 | 4.0000 (n=1) (ref) |" in md
    assert "**Caveat:** ko_bpb saw only 1 document(s); en_bpb saw only 6 document(s)" in md
    assert "| KoBLLa-Inst. | 7 | 5 | 4 | 3 |" in md
    assert (tmp_path / "r/results.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((tmp_path / "r/plot.csv").open(encoding="utf-8")))
    assert len(rows) == 5 * 5 and {"series", "model", "task", "score"} == set(rows[0])


def test_missing_model_file_is_named(tmp_path):
    _write(tmp_path, skip=("koblla_chatvec",))
    with pytest.raises(InputError, match=r"koblla_chatvec.json: missing; run `dvc repro evaluate@koblla_chatvec`"):
        read_scores(tmp_path)


def test_non_flat_file_is_rejected(tmp_path):
    _write(tmp_path)
    (tmp_path / "koblla.json").write_text(json.dumps({"results": {"x": 1}}))
    with pytest.raises(InputError, match="flat JSON object"):
        read_scores(tmp_path)


def test_report_stage(tmp_path):
    _write(tmp_path / "m")
    out = subprocess.run(
        [sys.executable, "-m", "stages.report", "--metrics-dir", str(tmp_path / "m"), "--out", str(tmp_path / "x.md"),
         "--plot", str(tmp_path / "x.png")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "5 models x 3 tasks" in out.stdout and "KoBLLa-Inst.: English Δ +0.0100" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "stages.report", "--metrics-dir", str(tmp_path / "none"),
         "--out", str(tmp_path / "y.md"), "--plot", str(tmp_path / "y.png")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "missing" in bad.stderr and not (tmp_path / "y.md").exists()


def test_report_help():
    out = subprocess.run([sys.executable, "-m", "stages.report", "--help"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "python -m stages.report --metrics-dir metrics/eval" in out.stdout
