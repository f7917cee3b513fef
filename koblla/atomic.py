"""Write outputs so a crash never leaves a half-written file where a later stage would take it as complete.

Every writer goes to a temporary sibling (same filesystem, so the final `os.replace` is atomic) and renames it
into place only once it is complete. Temp siblings are named `.NAME.<pid>.<random>.tmp`; a process killed mid-write
(kill -9, a lost node) leaves one behind, and the next write of NAME removes those whose process is gone
(`remove_stale_temps`), so a rerun of the stage leaves nothing untracked.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temp siblings of `path` (`.NAME.<pid>.<random>.tmp`, and the older `.NAME.<random>.tmp`) whose
    writer is gone; returns what it removed. A temp whose pid is a live process is kept: it may be in use."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    # tempfile's random part is 8 characters of [a-z0-9_]; matching it exactly keeps `.NAME.json.*.tmp` (the temp
    # of a sibling called NAME.json) out.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}(?:\.old)?\.tmp")
    removed = []
    for tmp in path.parent.iterdir():
        m = pattern.fullmatch(tmp.name)
        if not m or (m.group(1) and _pid_alive(int(m.group(1)))):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        removed.append(tmp)
    return removed


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=suffix + ".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs should be as readable as any other dir
    return tmp


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp dir; on success it replaces `path` (an existing dir there is removed first)."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            # Move the old dir aside first so `path` is never a mix of old and new files.
            old = _tmp_sibling(path, ".old")
            os.replace(path, old / path.name)
            shutil.rmtree(old)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temp file beside `path` for writing; it replaces `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
        if "newline" not in open_kwargs and "w" in mode:
            open_kwargs["newline"] = ""
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs should be as readable as any other file
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Atomically write `obj` as UTF-8 JSON (Korean stays readable: ensure_ascii=False)."""
    with atomic_file(path) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False, sort_keys=False)
        f.write("\n")


def unprotect(path: str | os.PathLike) -> None:
    """Make `path` a private, writable file before editing it in place (e.g. appending to a persistent log).

    DVC's cache links outputs into the workspace (hardlink/symlink): the workspace file then *is* the cache object,
    read-only, and appending to it would corrupt the cache. Like `dvc unprotect`, copy it to a fresh file first.
    """
    path = Path(path)
    if not path.exists():
        return
    st = os.lstat(path)
    if path.is_symlink() or st.st_nlink > 1 or not os.access(path, os.W_OK):
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        shutil.copyfile(path, tmp)  # follows a symlink: copies the content
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
