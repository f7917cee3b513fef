"""Every config under configs/ loads, opens with how to run it, and every `_component_` in it imports; the finetune
YAMLs hold no value the stage fills (those keys are `???`, the values live in params.yaml)."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _components(node, where=""):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "_component_":
                yield where or "<root>", v
            else:
                yield from _components(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _components(v, f"{where}[{i}]")


def test_there_are_configs():
    assert CONFIGS, "configs/ holds no YAML files"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_components_import(path):
    from torchtune.config._utils import _get_component_from_path

    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    comps = list(_components(cfg))
    for where, dotpath in comps:
        try:
            _get_component_from_path(dotpath)
        except Exception as e:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"{path.name}: {where}._component_ {dotpath!r} does not import: {e}")


FINETUNE = [p for p in CONFIGS if p.name.startswith("finetune")]


@pytest.mark.parametrize("path", FINETUNE, ids=lambda p: p.name)
def test_finetune_config_says_how_to_run_it(path):
    head = path.read_text(encoding="utf-8").split("\n\n")[0]
    assert head.startswith("#")
    assert "tune run koblla/finetune/tune_recipes/lora_finetune_single_device.py --config " in head
    assert "koblla/finetune/tune_recipes/lora_finetune_distributed.py" in head
    cfg = OmegaConf.load(path)
    assert cfg.metric_logger._component_ == "koblla.finetune.dvclive_logger.DVCLiveLogger"
    assert cfg.checkpointer._component_ == "torchtune.training.FullModelHFCheckpointer"


def _stage_values(path: Path, tmp_path: Path) -> tuple[dict, str]:
    from finetune_helpers import fake_model_dir
    from params_helpers import section_params

    from koblla.finetune.tune_config import base_values, instruct_values

    model = fake_model_dir(tmp_path / "model")
    if "instruct" in path.name:
        return instruct_values(section_params("finetune_instruct"), model, tmp_path, 1), "finetune_instruct"
    return base_values(section_params("finetune_base"), model, tmp_path, 1), "finetune_base"


@pytest.mark.parametrize("path", FINETUNE, ids=lambda p: p.name)
def test_every_value_has_one_home(path, tmp_path):
    """The keys the stage fills (from params.yaml, config.json, dvc.yaml's paths and the attempt) are exactly the
    YAML's `???` keys: a value written in the YAML too would be silently replaced, a `???` nobody fills would fail."""
    from koblla.finetune.tune_config import ATTEMPT_KEYS, finished_config, missing_keys, stage_config

    values, section = _stage_values(path, tmp_path)
    missing = set(missing_keys(OmegaConf.load(path)))
    assert missing == set(values) | set(ATTEMPT_KEYS), (
        f"{path.name}: set here and by the stage: {sorted(set(values) - missing)}; "
        f"??? that the stage does not fill: {sorted(missing - set(values) - set(ATTEMPT_KEYS))}")
    finished = finished_config(stage_config(path, values, {}, section), tmp_path / "work", False, path)
    assert not missing_keys(finished)


@pytest.mark.parametrize("path", FINETUNE, ids=lambda p: p.name)
def test_a_value_written_twice_is_an_error(path, tmp_path):
    from koblla.errors import InputError
    from koblla.finetune.tune_config import stage_config

    values, section = _stage_values(path, tmp_path)
    twice = tmp_path / path.name
    twice.write_text(path.read_text(encoding="utf-8").replace("  lora_rank: ???", "  lora_rank: 16"), encoding="utf-8")
    with pytest.raises(InputError, match="model.lora_rank has a value, but the stage sets it"):
        stage_config(twice, values, {}, section)
    unfilled = tmp_path / "unfilled.yaml"
    unfilled.write_text(path.read_text(encoding="utf-8") + "extra_knob: ???\n", encoding="utf-8")
    from koblla.finetune.tune_config import finished_config

    with pytest.raises(InputError, match="extra_knob"):
        finished_config(stage_config(unfilled, values, {}, section), tmp_path / "work", False, unfilled)
