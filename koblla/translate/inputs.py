"""Read LIMA-schema conversations (local JSONL, flat instruction/response JSONL, or GAIR/lima via `datasets`).

Every record becomes a `Conversation(id, source, turns)` with turns alternating user/assistant, user first.
A bad record (malformed JSON, empty or odd-length conversation, non-string turn) is an InputError naming the file
and line, or, with on_bad_record=skip, a counted skip.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from koblla.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conversation:
    id: str
    source: str
    turns: tuple[str, ...]  # even count: user, assistant, user, assistant, ...


@dataclass
class ReadReport:
    read: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)


class BadRecord(InputError):
    def __init__(self, where: str, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{where}: {detail}")


def _check_turns(turns, where: str) -> tuple[str, ...]:
    if not isinstance(turns, list):
        raise BadRecord(where, "not_a_list", f"`conversations` must be a list of strings, got {type(turns).__name__}")
    if not turns:
        raise BadRecord(where, "empty", "empty conversation")
    for i, t in enumerate(turns):
        if not isinstance(t, str):
            raise BadRecord(where, "non_string_turn", f"turn {i} is {type(t).__name__}, expected a string")
        if not t.strip():
            raise BadRecord(where, "empty_turn", f"turn {i} is empty")
    if len(turns) % 2:
        raise BadRecord(where, "odd_length", f"{len(turns)} turns: expected user/assistant pairs (an even count)")
    return tuple(turns)


def parse_record(obj, fmt: str, where: str, index: int) -> Conversation:
    """One JSON object -> Conversation; raises BadRecord naming `where`."""
    if not isinstance(obj, dict):
        raise BadRecord(where, "not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    if fmt == "instruction_response":
        missing = [k for k in ("instruction", "response") if k not in obj]
        if missing:
            raise BadRecord(where, "missing_field", f"missing field(s) {missing} (input_format instruction_response)")
        turns = _check_turns([obj["instruction"], obj["response"]], where)
        source = obj.get("source", "instruction_response")
    else:
        if "conversations" not in obj:
            raise BadRecord(where, "missing_field", "missing field 'conversations' (input_format lima)")
        turns = _check_turns(obj["conversations"], where)
        source = obj.get("source", "")
    rid = obj.get("id", f"lima_{index}")
    return Conversation(id=str(rid), source=str(source or ""), turns=turns)


def _iter_jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line


def _iter_hf(name: str, split: str):
    token = os.environ.get("HF_TOKEN") or None
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split, token=token)
    except Exception as e:  # offline, gated without token, unknown name: all end here
        raise InputError(
            f"could not load {name!r} split {split!r} through `datasets` ({type(e).__name__}: {e}). GAIR/lima is "
            "gated: accept its terms on the Hub, export HF_TOKEN, and run online (unset HF_HUB_OFFLINE / "
            "HF_DATASETS_OFFLINE); or download it once and set translate.input to the local train.jsonl with "
            "input_format: lima"
        ) from None
    yield from enumerate(ds, 1)


def read_conversations(params, on_bad: str = "error") -> tuple[list[Conversation], ReadReport]:
    """Read `params.input` (or `params.hf_dataset`) in `params.input_format`."""
    report = ReadReport()
    out: list[Conversation] = []
    if params.input_format == "hf":
        name = f"{params.hf_dataset}[{params.hf_split}]"
        rows = ((f"{name} row {i}", obj, None) for i, obj in _iter_hf(params.hf_dataset, params.hf_split))
        fmt = "lima"
    else:
        path = Path(params.input)
        if not path.is_file():
            raise InputError(f"translate.input: {str(path)!r} does not exist (set translate.input in params.yaml)")
        rows = ((f"{path}:{n}", None, line) for n, line in _iter_jsonl(path))
        fmt = params.input_format
    seen: set[str] = set()
    for where, obj, line in rows:
        try:
            if line is not None:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadRecord(where, "malformed_json", f"not valid JSON ({e.msg} at column {e.colno})") from None
            conv = parse_record(obj, fmt, where, report.read + report.skipped)
            if conv.id in seen:
                raise BadRecord(where, "duplicate_id", f"duplicate id {conv.id!r}")
        except BadRecord as e:
            if on_bad == "error":
                raise InputError(
                    f"{e} (fix the record, or set translate.on_bad_record: skip to count and skip it)"
                ) from None
            report.skipped += 1
            report.skip_reasons[e.reason] = report.skip_reasons.get(e.reason, 0) + 1
            log.warning("skipping bad record: %s", e)
            continue
        seen.add(conv.id)
        out.append(conv)
        report.read += 1
        if params.limit and report.read >= params.limit:
            break
    if not out:
        src = params.hf_dataset if params.input_format == "hf" else params.input
        raise InputError(f"no usable conversations in {src}")
    return out, report
