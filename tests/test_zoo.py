"""The presets shipped in zoo/: each registered one loads by name on this backend."""

import json

import numpy as np
import pytest

import ddeq_keras
from ddeq_keras.presets import registry

SHIPPED = [name for name in registry.list_presets() if registry.shipped_folder(name)]


def test_every_zoo_folder_is_registered():
    zoo = registry.ZOO_DIR
    folders = sorted(p.name for p in zoo.glob("*/")) if zoo.is_dir() else []
    assert folders == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_loads_by_name_and_predicts(name):
    """Hash-checked, built from its config, weights assigned; one prediction is finite."""
    model = ddeq_keras.from_pretrained(name)
    config = json.loads((registry.shipped_folder(name) / "config.json").read_text())
    assert type(model).__name__ == config["task"]
    rng = np.random.default_rng(0)
    points = rng.normal(size=(2, 60, model.point_dim)).astype("float32")
    out = model.predict_on_batch({"points": points, "mask": np.ones((2, 60), bool)})
    values = out["points"] if isinstance(out, dict) else out
    assert np.isfinite(np.asarray(values)).all()
