"""Versioned translation prompts: prompts/translate_<version>.yaml in the repo (never edited in place)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from koblla.errors import ParamsError

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    registers: dict[str, str]
    retry_note: str
    context: str = ""  # template with {context}; "" = this prompt version sends no conversation context

    def messages(self, masked_text: str, register: str, retry_reasons: list[str] | None = None,
                 context: str | None = None) -> list[dict]:
        system = self.system.replace("{register_rule}", self.registers[register]).strip()
        if context and self.context:
            system += "\n\n" + self.context.replace("{context}", context).strip()
        if retry_reasons:
            system += "\n\n" + self.retry_note.replace("{reasons}", ", ".join(retry_reasons))
        return [{"role": "system", "content": system}, {"role": "user", "content": masked_text}]


def load_prompt(version: str, prompts_dir: Path = PROMPTS_DIR) -> PromptTemplate:
    path = prompts_dir / f"translate_{version}.yaml"
    if not path.is_file():
        have = sorted(p.stem.removeprefix("translate_") for p in prompts_dir.glob("translate_*.yaml"))
        raise ParamsError(f"translate.prompt_version {version!r}: {path} does not exist (available: {have})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if data.get("version") != version:
        raise ParamsError(
            f"{path}: says version {data.get('version')!r}, expected {version!r} (file name and field must agree)"
        )
    missing = {"banmal", "hapsyo", "haeyo"} - set(data.get("registers", {}))
    if missing:
        raise ParamsError(f"{path}: registers {sorted(missing)} missing")
    return PromptTemplate(version, data["system"], data["registers"], data.get("retry_note", ""),
                  data.get("context", ""))
