"""Translation memory: content-addressed, append-only JSONL, shared by every backend.

key = sha256 of (source text, target language, register, prompt version, model). Each accepted translation is
appended as one JSON line and flushed at once, so a crash (even kill -9) loses at most the line being written;
a torn last line is cut off on the next open. On load, the first record of a key wins, so duplicates can never
reach the outputs. Read-only seed memories (the shipped reference translations) are consulted too.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from koblla.atomic import unprotect
from koblla.errors import InputError

log = logging.getLogger(__name__)
MEMORY_FILE = "memory.jsonl"
KEY_FIELDS = ("source", "target_lang", "register", "prompt_version", "model")


def memory_key(source: str, target_lang: str, register: str, prompt_version: str, model: str) -> str:
    blob = json.dumps([source, target_lang, register, prompt_version, model], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def record_key(rec: dict) -> str:
    return memory_key(*(rec[f] for f in KEY_FIELDS))


class TranslationMemory:
    """`dir/memory.jsonl` (read-write) plus read-only seed files."""

    def __init__(self, directory: str | os.PathLike, seeds: list[str | os.PathLike] = ()):
        self.dir = Path(directory)
        self.path = self.dir / MEMORY_FILE
        self._entries: dict[str, str] = {}
        for seed in seeds:
            seed = Path(seed)
            if not seed.is_file():
                raise InputError(
                    f"translate.seed_memory: {str(seed)!r} does not exist (fix or remove it in params.yaml)"
                )
            self._load(seed)
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            # DVC may have checked this persistent output out as a link into its cache: edit a private copy.
            unprotect(self.path)
            self._repair_tail()
            self._load(self.path)
        else:
            self.path.touch()
        self._fh = None

    def _repair_tail(self) -> None:
        """Cut a torn last line (a crash mid-write) so the next append starts on a fresh line."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run",
                        self.path, len(data) - keep)
            with open(self.path, "r+b") as f:
                f.truncate(keep)

    def _load(self, path: Path) -> None:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    key = record_key(rec)
                    text = rec["translation"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise InputError(
                        f"{path}:{lineno}: not a translation-memory record ({type(e).__name__}: {e}); "
                        f"records need {list(KEY_FIELDS) + ['translation']}"
                    ) from None
                self._entries.setdefault(key, text)  # the first record of a key wins

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> str | None:
        return self._entries.get(key)

    def put(self, source: str, target_lang: str, register: str, prompt_version: str, model: str,
            translation: str, backend: str) -> str:
        """Append one record and flush it to the OS now (survives kill -9 of this process)."""
        key = memory_key(source, target_lang, register, prompt_version, model)
        if key in self._entries:
            return key
        rec = {"key": key, "source": source, "target_lang": target_lang, "register": register,
               "prompt_version": prompt_version, "model": model, "translation": translation, "backend": backend}
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._fh.flush()
        self._entries[key] = translation
        return key

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
