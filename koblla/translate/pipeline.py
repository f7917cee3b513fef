"""Translate conversations turn by turn through the memory and a backend, then assemble the Korean turns.

Each turn is split into chunks within the token budget; each chunk with something to translate is one ChunkJob
keyed by (source, target language, register, prompt version, model). Identical chunks are translated once. Memory
hits are served first; the backend gets only the misses, and every accepted translation is appended to the memory
at once, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from koblla.text.register import register_ok
from koblla.text.verbatim import PLACEHOLDER_RE, mask
from koblla.translate.backends import make_backend
from koblla.translate.backends.base import ChunkJob
from koblla.translate.inputs import Conversation
from koblla.translate.memory import TranslationMemory, memory_key
from koblla.translate.prompts import load_prompt
from koblla.translate.segment import split_message
from koblla.translate.validate import Limits, check_translation, checks_passed

log = logging.getLogger(__name__)
TARGET_LANG = "ko"


@dataclass
class Piece:
    key: str | None  # None: verbatim (whitespace, a code-only chunk)
    lead: str
    text: str  # source core (verbatim text when key is None)
    trail: str


@dataclass
class Translated:
    conv: Conversation
    korean: list[str | None]  # None where a turn has a flagged chunk
    flags: dict[int, list[str]] = field(default_factory=dict)  # turn index -> reasons
    checks: dict[int, list[str]] = field(default_factory=dict)  # turn index -> quality-gate checks passed

    @property
    def ok(self) -> bool:
        return not self.flags


def turn_register(index: int, assistant_register: str) -> str:
    return "banmal" if index % 2 == 0 else assistant_register


def plan_turn(text: str, register: str, params, jobs: dict[str, ChunkJob], where: str,
              history: list[tuple[str, str, str | None]] | None = None) -> list[Piece]:
    """Pieces of one turn; new chunks become Jobs whose context is `history` (the conversation so far, grown here
    chunk by chunk, so a long answer's later chunks see its earlier ones)."""
    history = [] if history is None else history
    role = "user" if register == "banmal" else "assistant"
    pieces = []
    for chunk, sep in split_message(text, params.chunk_tokens):
        core = chunk.strip()
        lead, trail = chunk[: len(chunk) - len(chunk.lstrip())], chunk[len(chunk.rstrip()):] + sep
        masked = mask(core)
        if not re.search(r"[^\W\d_]", PLACEHOLDER_RE.sub("", masked.text)):  # no letters: nothing to translate
            pieces.append(Piece(None, lead, core, trail))
            if core:
                history.append((role, core, None))
            continue
        key = memory_key(core, TARGET_LANG, register, params.prompt_version, params.model)
        if key not in jobs:
            context = list(history) if params.context else []
            jobs[key] = ChunkJob(key, core, register, masked, where, [c for c in context if c[2] != key])
        pieces.append(Piece(key, lead, core, trail))
        history.append((role, core, key))
    return pieces


def translate_conversations(
    convs: list[Conversation], params, memory: TranslationMemory
) -> tuple[list[Translated], dict]:
    """Returns one Translated per conversation and the run's counters (for metrics/translate.json)."""
    prompt = load_prompt(params.prompt_version)
    limits = Limits.from_params(params)
    jobs: dict[str, ChunkJob] = {}
    layout = []
    for c in convs:
        history: list[tuple[str, str, str | None]] = []
        layout.append([plan_turn(t, turn_register(i, params.assistant_register), params, jobs, f"{c.id} turn {i}",
                                 history) for i, t in enumerate(c.turns)])
    hits = sum(k in memory for k in jobs)
    misses = [j for k, j in jobs.items() if k not in memory]
    log.info("%d conversations, %d unique chunks to translate: %d in memory, %d for backend %s",
             len(convs), len(jobs), hits, len(misses), params.backend)
    backend = make_backend(params, prompt, limits)
    backend.translation_of = memory.get

    def accept(job: ChunkJob, text: str) -> None:
        memory.put(job.source, TARGET_LANG, job.register, params.prompt_version, params.model, text, backend.name)

    flagged = backend.run(misses, accept) if misses else {}
    out: list[Translated] = []
    rechecked: dict[str, list[str]] = {}  # key -> reasons; memory entries pass the current gate once per key
    for conv, turns in zip(convs, layout, strict=True):
        tr = Translated(conv, [])
        for i, pieces in enumerate(turns):
            parts, reasons = [], []
            for p in pieces:
                if p.key is None:
                    parts.append(p.lead + p.text + p.trail)
                elif (text := memory.get(p.key)) is not None:
                    if p.key not in rechecked:  # also what an older, laxer gate let into the memory
                        rechecked[p.key] = check_translation(jobs[p.key].source, text, jobs[p.key].register, limits)
                    reasons.extend(rechecked[p.key])
                    parts.append(p.lead + text + p.trail)
                else:
                    reasons.extend(flagged.get(p.key, ["missing"]))
            tr.checks[i] = checks_passed(reasons)
            if reasons:
                tr.flags[i] = sorted(set(reasons))
                tr.korean.append(None)
            else:
                tr.korean.append("".join(parts))
        out.append(tr)
    memory_rejected = Counter(r for rs in rechecked.values() for r in rs)
    s = backend.stats
    counters = {
        "chunks": sum(len(p) for turns in layout for p in turns),
        "unique_chunks": len(jobs),
        "cache_hits": hits,
        "cache_hit_rate": round(hits / len(jobs), 4) if jobs else 1.0,
        "translated_now": len(misses) - len(flagged),
        "requests": s.requests,
        "retries": s.retries,
        "tokens_in": s.tokens_in,
        "tokens_out": s.tokens_out,
        "transport_errors": dict(s.transport_errors),
        "rejected_attempts_by_reason": dict(s.rejected),
        "failures_by_reason": dict(Counter(r for rs in flagged.values() for r in rs)),
        "flagged_chunks": len(flagged),
        # memory entries that fail today's gate (written by an older, laxer one): their turns are flagged
        "memory_entries_rejected": sum(bool(rs) for rs in rechecked.values()),
        "memory_rejected_by_reason": dict(memory_rejected),
    }
    counters.update(register_compliance(out, params, limits))
    return out, counters


def register_compliance(results: list[Translated], params, limits: Limits) -> dict:
    """% of Korean user turns in 반말 and assistant turns in the target 존댓말, as the validator judges them."""
    ok = Counter()
    total = Counter()
    for tr in results:
        for i, ko in enumerate(tr.korean):
            if ko is None:
                continue
            role = "user" if i % 2 == 0 else "assistant"
            total[role] += 1
            ok[role] += register_ok(ko, turn_register(i, params.assistant_register), limits.min_register_share)[0]
    return {f"register_compliance_{r}_pct": round(100.0 * ok[r] / total[r], 2) if total[r] else None
            for r in ("user", "assistant")}
