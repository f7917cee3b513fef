"""Run the real DVC pipeline in a throwaway copy of the repo (used by the end-to-end tests)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO_ROOT
from filelock import FileLock

VENV_BIN = Path(sys.executable).parent


def pipeline_env() -> dict[str, str]:
    """Stage commands run `python -m stages.X`: the test's venv goes first on PATH; nothing downloads."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1")
    env.setdefault("GIT_AUTHOR_NAME", "KoBLLa test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@koblla.local")
    env.setdefault("GIT_COMMITTER_NAME", "KoBLLa test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@koblla.local")
    return env


def run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=pipeline_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (f"{' '.join(cmd)} failed in {cwd} ({out.returncode}):\n"
                                 f"{out.stdout[-6000:]}\n{out.stderr[-6000:]}")
    return out


def dvc(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return run([str(VENV_BIN / "dvc"), *args], cwd=cwd, timeout=timeout)


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run(["git", *args], cwd=cwd)


def copy_repo(dest: Path) -> Path:
    """Copy the tracked and untracked-but-not-ignored files of this checkout into a fresh git repo at `dest`."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO_ROOT / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    git("init", "-q", "-b", "main", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "pipeline under test", cwd=dest)
    return dest


def ran_stages(output: str) -> set[str]:
    """Names of the stages that `dvc repro` / `dvc exp run` actually ran (not skipped)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@dataclass(frozen=True)
class Run:
    """One `dvc repro` of the shared default pipeline: its stdout and how long it took."""
    stdout: str
    seconds: float


class DefaultPipeline:
    """The embedded default pipeline, reproduced once per test session in a copy of the repo and shared by every
    test (and every pytest-xdist worker) that needs it: first `dvc repro make_tiny_models` (the tiny checkpoints
    most tests load), then `dvc repro` of everything. Each step runs once, under its own file lock; its stdout is
    kept beside the copy. The copy is read-only for tests: a test that changes params or reruns stages works on
    `clone()`."""

    TINY = ("Meta-Llama-3-8B", "Meta-Llama-3-8B-Instruct")

    def __init__(self, root: Path):
        self.root = root
        self.repo = root / "repo"
        self.tiny_lock = root / "tiny.dvc.lock"  # the repo's dvc.lock right after make_tiny_models
        root.mkdir(parents=True, exist_ok=True)

    def _step(self, name: str, *args: str) -> Run:
        """Run `dvc repro ARGS` once a session: the first caller runs it under the step's own lock (so a test that
        needs only the tiny models never waits for the rest of the pipeline), later callers read its record."""
        record = self.root / f"{name}.json"
        if not record.is_file():
            with FileLock(str(self.root / f"{name}.lock")):
                if not record.is_file():
                    self._run_step(name, record, args)
        return Run(**json.loads(record.read_text(encoding="utf-8")))

    def _run_step(self, name: str, record: Path, args: tuple[str, ...]) -> None:
        if not (self.repo / ".git").is_dir():
            shutil.rmtree(self.repo, ignore_errors=True)
            copy_repo(self.repo)
        t0 = time.monotonic()
        out = dvc("repro", *args, cwd=self.repo, timeout=1800)
        run = Run(out.stdout, round(time.monotonic() - t0, 1))
        if name == "tiny":  # a writable copy, independent of what later DVC commands do in the repo
            shutil.copy2(self.repo / "dvc.lock", self.tiny_lock)  # as make_tiny_models left it (`full` rewrites it)
            for d in self.TINY:
                shutil.copytree(self.repo / "models/meta" / d, self.root / "tiny" / d, dirs_exist_ok=True)
                for f in (self.root / "tiny" / d).rglob("*"):
                    f.chmod(0o755 if f.is_dir() else 0o644)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(run.__dict__), encoding="utf-8")
        tmp.rename(record)

    def prefetch(self, full: bool) -> None:
        """Start `full()` (or only the tiny models) in a background process, once a session (the first caller wins),
        so the pipeline runs while the tests that need none of it do. A test that needs it waits on the lock; if the
        background run failed, that test runs the step itself and fails with its message. The process stays in the
        session's process group, so Ctrl-C stops it with pytest."""
        try:
            os.close(os.open(self.root / "prefetch.log", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        code = (f"import sys; sys.path.insert(0, {str(REPO_ROOT / 'tests')!r}); from pathlib import Path; "
                f"from pipeline_helpers import DefaultPipeline; "
                f"DefaultPipeline(Path({str(self.root)!r})).{'full' if full else 'tiny_run'}()")
        with open(self.root / "prefetch.log", "w") as log:
            subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=pipeline_env(), stdout=log,
                             stderr=subprocess.STDOUT)

    def tiny(self) -> tuple[Path, Path]:
        """(base_dir, instruct_dir): the make_tiny_models stage's output, as a writable copy."""
        self.tiny_run()
        return tuple(self.root / "tiny" / d for d in self.TINY)

    def tiny_run(self) -> Run:
        return self._step("tiny", "make_tiny_models")

    def full(self) -> Run:
        """Every stage, after the tiny models (so `tiny_run().stdout + full().stdout` is one whole `dvc repro`)."""
        self.tiny_run()
        return self._step("full")

    def clone(self, dest: Path) -> Path:
        """A private copy of the reproduced repo (git, DVC cache and outputs; hard links between outputs and cache
        kept), for tests that change params or rerun stages."""
        self.full()  # after it nothing writes to self.repo
        subprocess.run(["cp", "-a", str(self.repo), str(dest)], check=True)
        return dest
