"""Atomic writers: a failure leaves the previous output (or nothing), never a half-written one."""
from __future__ import annotations

import os

import pytest

from koblla.atomic import atomic_dir, atomic_file, unprotect, write_json


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as d:
        (d / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as d:
            (d / "a.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (out / "a.txt").read_text() == "one"
    with atomic_dir(out) as d:
        (d / "b.txt").write_text("two")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"], "old files must not leak into the new output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no temp dirs left behind"


def test_atomic_file_and_json(tmp_path):
    f = tmp_path / "m.json"
    write_json(f, {"점수": 1.5})
    assert '"점수": 1.5' in f.read_text(encoding="utf-8")
    with pytest.raises(ValueError):
        with atomic_file(f) as fh:
            fh.write("garbage")
            raise ValueError
    assert '"점수"' in f.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_unprotect_breaks_hardlinks_and_symlinks(tmp_path):
    cache = tmp_path / "cache_obj"
    cache.write_text("line1\n")
    os.chmod(cache, 0o444)
    hard, soft = tmp_path / "hard.jsonl", tmp_path / "soft.jsonl"
    os.link(cache, hard)
    soft.symlink_to(cache)
    for p in (hard, soft):
        unprotect(p)
        with open(p, "a") as f:
            f.write("line2\n")
        assert p.read_text() == "line1\nline2\n"
    assert cache.read_text() == "line1\n", "the cache object must never change"
    unprotect(tmp_path / "missing")  # no-op


def test_outputs_get_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {})
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_kill_9_mid_write_leaves_nothing_after_the_next_write(tmp_path):
    """A writer killed inside atomic_dir / atomic_file leaves `.NAME.<pid>.*.tmp`; the next write of NAME removes
    it (its process is gone), and a live writer's temp is left alone."""
    import signal
    import subprocess
    import sys
    import time

    from koblla.atomic import remove_stale_temps

    code = ("import sys, time; from koblla.atomic import atomic_dir, atomic_file\n"
            "with atomic_dir(sys.argv[1]) as d, atomic_file(sys.argv[2]) as f:\n"
            "    (d / 'w.bin').write_bytes(b'x' * 1000); f.write('half'); f.flush()\n"
            "    print('writing', flush=True); time.sleep(600)\n")
    out, metrics = tmp_path / "model", tmp_path / "m.json"
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), str(metrics)], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.stdout.readline().strip() == "writing"
    live = sorted(p.name for p in tmp_path.iterdir())
    assert len(live) == 2 and all(n.startswith((f".model.{proc.pid}.", f".m.json.{proc.pid}.")) for n in live)
    assert remove_stale_temps(out) == [] and remove_stale_temps(metrics) == []  # its writer is alive: kept
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    assert len(list(tmp_path.iterdir())) == 2  # what the kill left
    with atomic_dir(out) as d:
        (d / "w.bin").write_bytes(b"done")
    write_json(metrics, {"ok": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "model"]
