"""One home per value: a knob's value is written in params.yaml only, never also as a pydantic default.

A default in a section model is a second copy of the value that params.yaml already sets (and the two drift: the
model's default is what a test or a caller without params.yaml gets, params.yaml is what the pipeline runs with).
"""
from __future__ import annotations

import pytest
import yaml

from koblla.errors import ParamsError
from koblla.params import SECTIONS, Section, section_class, validate_all, validate_section


def defaults_of(cls: type[Section], prefix: str) -> list[str]:
    """Dotted names of every field with a default, nested sections included."""
    out = []
    for name, field in cls.model_fields.items():
        if not field.is_required():
            out.append(f"{prefix}.{name}")
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out += defaults_of(ann, f"{prefix}.{name}")
    return out


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_no_value_written_twice(section):
    found = defaults_of(section_class(section), section)
    assert not found, (f"{found}: a default in the model duplicates params.yaml; declare the type and constraints "
                       f"only (Field(ge=...)) and set the value in params.yaml")


@pytest.fixture(scope="module")
def params_data(repo_root) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))


def test_params_yaml_validates(repo_root):
    assert set(validate_all(repo_root / "params.yaml")) == set(SECTIONS)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_a_key_the_model_lacks_is_rejected(section, params_data):
    raw = dict(params_data[section], not_a_knob=1)
    with pytest.raises(ParamsError, match=rf"{section}\.not_a_knob: unknown key"):
        validate_section(section, raw)
