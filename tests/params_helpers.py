"""params.yaml's values for tests: a copy of the file with some keys of one section changed (for stage tests), or
one section's validated model with some keys changed (params.yaml is the one home of every value; the pydantic
models carry no defaults)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from conftest import REPO_ROOT


def repo_params() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))


def params_with(tmp_path: Path, section: str, **updates) -> Path:
    """A copy of params.yaml in tmp_path with `updates` merged into `section` (nested dicts key by key)."""
    data = repo_params()
    data[section] = _merged(data[section], updates)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _merged(base: dict, updates: dict) -> dict:
    out = dict(base)
    for k, v in updates.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and v else v
    return out


def section_values(section: str, **updates) -> dict:
    """params.yaml's `section` as a dict with `updates` merged in (nested dicts key by key)."""
    return _merged(repo_params()[section], updates)


def section_params(section: str, **updates):
    """The validated params of one section: params.yaml's values (the models hold no defaults) with `updates`."""
    from koblla.params import validate_section

    return validate_section(section, section_values(section, **updates), REPO_ROOT / "params.yaml")



def openai_params(server, openai: dict | None = None, **updates):
    """translate params for the openai backend against a tests/translate_server.py FakeLLMServer: model fake-model,
    the key from $KOBLLA_TEST_KEY, no seed memory, short timeouts and backoff; `openai` changes keys of the openai
    sub-section, `updates` those of the section."""
    transport = dict(base_url=server.base_url, api_key_env="KOBLLA_TEST_KEY", concurrency=4, timeout_s=0.5,
                     max_retries=4, backoff_base_s=0.01, backoff_max_s=0.05)
    return section_params("translate", backend="openai", model="fake-model", seed_memory=[],
                          openai={**transport, **(openai or {})}, **updates)
