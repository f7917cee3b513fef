"""Every config under configs/ loads, opens with how to run it, and every `_component_` in it imports."""
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


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name.startswith("finetune")], ids=lambda p: p.name)
def test_finetune_config_says_how_to_run_it(path):
    head = path.read_text(encoding="utf-8").split("\n\n")[0]
    assert head.startswith("#")
    assert "tune run koblla/finetune/tune_recipes/lora_finetune_single_device.py --config configs/" in head
    assert "koblla/finetune/tune_recipes/lora_finetune_distributed.py" in head
    cfg = OmegaConf.load(path)
    assert cfg.metric_logger._component_ == "koblla.finetune.dvclive_logger.DVCLiveLogger"
    assert cfg.checkpointer._component_ == "torchtune.training.FullModelHFCheckpointer"
