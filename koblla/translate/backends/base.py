"""What every backend shares: the unit of work, counters, and the restore-then-validate step of one attempt."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from koblla.errors import KoBLLaError
from koblla.translate.segment import Masked, PlaceholderError, restore
from koblla.translate.validate import Limits, check_translation


class BackendError(KoBLLaError):
    """A backend cannot run at all (missing key, unreachable model folder, memory misses)."""


@dataclass
class Job:
    key: str  # translation-memory key
    source: str  # English chunk (surrounding whitespace removed)
    register: str  # banmal | hapsyo | haeyo
    masked: Masked
    where: str  # "lima_3 turn 1" for messages


@dataclass
class Stats:
    requests: int = 0  # HTTP requests sent / generate() rows run
    retries: int = 0  # transport retries + validation re-translations
    tokens_in: int = 0
    tokens_out: int = 0
    transport_errors: Counter = field(default_factory=Counter)  # http_429, http_500, timeout, bad_json ...
    rejected: Counter = field(default_factory=Counter)  # validation failures of single attempts, by reason
    flagged: Counter = field(default_factory=Counter)  # chunks given up on after max_attempts, by last reason


Accept = Callable[[Job, str], None]  # called once per job with its accepted translation


def judge(job: Job, raw: str | None, limits: Limits) -> tuple[str | None, list[str]]:
    """Restore placeholders in one model output and validate it: (translation, []) or (None, reasons)."""
    if raw is None or not raw.strip():
        return None, ["empty"]
    raw = raw.strip()
    try:
        text = restore(raw, job.masked.spans)
    except PlaceholderError:
        return None, ["placeholders"]
    reasons = check_translation(job.source, text, job.register, limits)
    return (None, reasons) if reasons else (text, [])


class Backend:
    name = "base"

    def __init__(self, params, prompt, limits: Limits):
        self.params, self.prompt, self.limits = params, prompt, limits
        self.stats = Stats()

    def run(self, jobs: list[Job], accept: Accept) -> dict[str, list[str]]:
        """Translate `jobs`, calling accept(job, text) for each success; return {key: reasons} of flagged jobs."""
        raise NotImplementedError
