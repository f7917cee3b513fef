"""What every backend shares: the unit of work, counters, and the restore-then-validate step of one attempt."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from koblla.errors import KoBLLaError
from koblla.text.verbatim import PLACEHOLDER_RE, Masked, PlaceholderError, restore
from koblla.translate.validate import Limits, check_translation


class BackendError(KoBLLaError):
    """A backend cannot run at all (missing key, unreachable model folder, memory misses)."""


@dataclass
class ChunkJob:
    key: str  # translation-memory key
    source: str  # English chunk (surrounding whitespace removed)
    register: str  # banmal | hapsyo | haeyo
    masked: Masked
    where: str  # "lima_3 turn 1" for messages
    # The conversation before this chunk (first conversation it occurs in): (role, English text, memory key or
    # None for text kept verbatim). Sent as read-only context with the accepted translations of those keys.
    context: list[tuple[str, str, str | None]] = field(default_factory=list)


@dataclass
class Stats:
    requests: int = 0  # HTTP requests sent / generate() rows run
    retries: int = 0  # transport retries + validation re-translations
    tokens_in: int = 0
    tokens_out: int = 0
    transport_errors: Counter = field(default_factory=Counter)  # http_429, http_500, timeout, bad_json ...
    rejected: Counter = field(default_factory=Counter)  # validation failures of single attempts, by reason


Accept = Callable[[ChunkJob, str], None]  # called once per job with its accepted translation


def judge(job: ChunkJob, raw: str | None, limits: Limits,
          finish_reason: str | None = None) -> tuple[str | None, list[str]]:
    """Restore placeholders in one model output and validate it: (translation, []) or (None, reasons).

    finish_reason "length" (the reply hit the output budget) is a truncation whatever the text looks like."""
    if finish_reason == "length":
        return None, ["truncated"]
    if raw is None or not raw.strip():
        return None, ["empty"]
    raw = raw.strip()
    if limits.placeholders_in_order:
        found = [int(n) for n in PLACEHOLDER_RE.findall(raw)]
        if found != list(range(len(job.masked.spans))):
            return None, ["placeholders"]
    try:
        text = restore(raw, job.masked.spans)
    except PlaceholderError:
        return None, ["placeholders"]
    reasons = check_translation(job.source, text, job.register, limits)
    return (None, reasons) if reasons else (text, [])


def render_context(job: ChunkJob, translation_of: Callable[[str], str | None], max_chars: int) -> str | None:
    """The conversation so far as text: English and accepted Korean of each earlier chunk, newest kept when it
    must be cut to `max_chars`. None when there is nothing (first chunk, or context off)."""
    if not job.context or max_chars <= 0:
        return None
    blocks = []
    for role, en, key in job.context:
        ko = en if key is None else translation_of(key)
        block = f"[{role}, English]\n{en}"
        if ko is not None:
            block += f"\n[{role}, Korean]\n{ko}"
        blocks.append(block)
    out: list[str] = []
    used = 0
    for b in reversed(blocks):
        if used + len(b) > max_chars:
            break
        out.append(b)
        used += len(b) + 2
    return "\n\n".join(reversed(out)) or None


class Backend:
    name = "base"

    def __init__(self, params, prompt, limits: Limits):
        self.params, self.prompt, self.limits = params, prompt, limits
        self.stats = Stats()
        self.translation_of: Callable[[str], str | None] = lambda key: None  # set by the pipeline (memory.get)

    def run(self, jobs: list[ChunkJob], accept: Accept) -> dict[str, list[str]]:
        """Translate `jobs`, calling accept(job, text) for each success; return {key: reasons} of flagged jobs."""
        raise NotImplementedError
