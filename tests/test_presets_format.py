"""Preset folders: round trips on this backend and across backends, and validation.

Tolerances. Same backend: loading assigns the very float32 values that were saved,
so variables and outputs must be bit-identical (no tolerance). Across backends: the
variables must still be bit-identical; outputs get the tolerance of
tests/test_cross_backend.py (1e-2 absolute on logits, same argmax), because the
equilibrium solver amplifies the ~1e-7 per-op rounding differences of the backends.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from huggingface_hub import ModelCard
from safetensors import safe_open
from safetensors.numpy import save_file

import ddeq_keras
from conftest import BACKEND
from ddeq_keras.presets import PRESET_FILES, PresetError, load_preset, save_preset, validate_preset
from ddeq_keras.presets import weights as weights_module
from preset_helpers import (
    ddeq_inputs,
    metrics,
    outputs,
    sequential_inputs,
    tiny_ddeq,
    tiny_sequential,
    variables,
)

OTHER_BACKEND = {"jax": "torch", "tensorflow": "jax", "torch": "tensorflow"}[BACKEND]


@pytest.fixture
def sequential_preset(tmp_path):
    model = tiny_sequential()
    folder = save_preset(model, tmp_path / "tiny_sequential", metrics=metrics())
    return model, folder


def test_ddeq_round_trip_gives_identical_variables_and_outputs(tmp_path):
    model = tiny_ddeq()
    x = ddeq_inputs()
    meta = {"class_names": [str(i) for i in range(10)], "point_dim": 2,
            "normalization": "unit_ball", "solver": "default"}
    folder = save_preset(model, tmp_path / "ddeq", metadata=meta, metrics=metrics(),
                         card_info={"repo_id": "org/ddeq", "command": "python -m train"})
    assert sorted(os.listdir(folder)) == sorted(PRESET_FILES)
    document = json.loads((folder / "config.json").read_text())
    assert document["class_name"] == "ddeq_keras>DDEQClassifier"
    assert document["keras_version"] == keras.__version__
    assert document["ddeq_keras_version"] == ddeq_keras.__version__
    assert {k: document[k] for k in meta} == meta
    with safe_open(str(folder / "model.safetensors"), framework="np") as f:
        # Every variable, trainable or not (inference particles, seed states).
        assert len(list(f.keys())) == len(model.variables) > len(model.trainable_variables)
    restored = load_preset(folder)
    assert type(restored) is type(model)
    before, after = variables(model), variables(restored)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    keras.tree.map_structure(np.testing.assert_array_equal, outputs(restored, x),
                             outputs(model, x))


def test_sequential_round_trip_keeps_non_trainable_state(sequential_preset):
    model, folder = sequential_preset
    restored = load_preset(folder, expected_class=keras.Sequential)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored.layers[2].moving_mean),
                                  np.linspace(-1, 1, 8).astype("float32"))
    x = sequential_inputs()
    np.testing.assert_array_equal(outputs(restored, x), outputs(model, x))


def test_expected_class_is_enforced(sequential_preset):
    _, folder = sequential_preset
    with pytest.raises(PresetError, match="holds a Sequential, not a DDEQClassifier"):
        load_preset(folder, expected_class=type(tiny_ddeq()))


SAVE_ELSEWHERE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    sys.path.insert(0, sys.argv[3])
    from preset_helpers import ddeq_inputs, outputs, tiny_ddeq
    from ddeq_keras.presets import save_preset
    model = tiny_ddeq(seed=5)
    save_preset(model, sys.argv[1])
    np.savez(sys.argv[2], logits=outputs(model, ddeq_inputs()))
    """
)


def test_preset_saved_on_another_backend_loads_here(tmp_path):
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(ddeq_keras.__file__)))
    env = dict(os.environ, KERAS_BACKEND=OTHER_BACKEND, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
    folder = tmp_path / "from_other"
    result = subprocess.run(
        [sys.executable, "-c", SAVE_ELSEWHERE, str(folder), str(tmp_path / "out.npz"),
         os.path.dirname(os.path.abspath(__file__))],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = load_preset(folder)
    with safe_open(str(folder / "model.safetensors"), framework="np") as f:
        stored = {key: f.get_tensor(key) for key in f.keys()}
    loaded = variables(model)
    assert loaded.keys() == stored.keys()
    for key, value in loaded.items():
        np.testing.assert_array_equal(value, stored[key].astype(value.dtype), err_msg=key)
    theirs = np.load(tmp_path / "out.npz")["logits"]
    ours = outputs(model, ddeq_inputs())
    np.testing.assert_allclose(ours, theirs, atol=1e-2)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "README.md"])
def test_missing_file_is_named(sequential_preset, name):
    _, folder = sequential_preset
    (folder / name).unlink()
    with pytest.raises(PresetError, match=name.replace(".", r"\.")):
        validate_preset(folder)


def test_publishing_requires_metrics(tmp_path):
    folder = save_preset(tiny_sequential(), tmp_path / "no_metrics")
    validate_preset(folder)
    with pytest.raises(PresetError, match=r"lacks metrics\.json"):
        validate_preset(folder, require_metrics=True)


def _rewrite_weights(folder, change, order=None):
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="np") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
        metadata = f.metadata()
    tensors = change(tensors)
    if order is not None:
        metadata["variable_order"] = json.dumps(order)
    save_file(tensors, str(path), metadata=metadata)


def _rename(tensors):
    tensors["dense/kernel_renamed"] = tensors.pop("dense/kernel")
    return tensors


def _reshape(tensors):
    tensors["dense_1/bias"] = np.zeros((3,), "float32")
    return tensors


def _add(tensors):
    tensors["extra/weight"] = np.zeros((1,), "float32")
    return tensors


def _retype(tensors):
    tensors["dense/bias"] = tensors["dense/bias"].astype("int64")
    return tensors


@pytest.mark.parametrize("change,expected", [
    (_rename, ["missing: dense/kernel (3, 8) F32", "unexpected: dense/kernel_renamed"]),
    (_reshape, ["mismatched: dense_1/bias is (3,) F32 in the file, the model expects (2,) F32"]),
    (_add, ["unexpected: extra/weight (1,) F32"]),
    (_retype, ["mismatched: dense/bias is (8,) I64"]),
])
def test_weights_that_do_not_fit_are_refused_naming_each_variable(sequential_preset, change,
                                                                   expected):
    _, folder = sequential_preset
    _rewrite_weights(folder, change)
    with pytest.raises(PresetError) as error:
        load_preset(folder)
    for text in expected:
        assert text in str(error.value)


def test_nothing_is_assigned_when_one_variable_does_not_fit(sequential_preset):
    model, folder = sequential_preset
    # The last variable in model order is wrong; all others would fit.
    _rewrite_weights(folder, _reshape)
    target = tiny_sequential(seed=7)
    before = variables(target)
    with pytest.raises(PresetError, match="nothing was assigned"):
        weights_module.load_weights(target, folder / "model.safetensors")
    for key, value in variables(target).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_weights_in_another_order_are_refused(sequential_preset):
    model, folder = sequential_preset
    keys = weights_module.variable_keys(model)
    swapped = [keys[2], keys[1], keys[0], *keys[3:]]
    _rewrite_weights(folder, lambda t: t, order=swapped)
    with pytest.raises(PresetError, match="another order"):
        load_preset(folder)


@pytest.mark.parametrize("bad,field", [
    ({"backend": "numpy"}, "backend"),
    ({"command": ""}, "command"),
    ({"value": float("nan")}, "value"),
    ({"date": "yesterday"}, "date"),
    ({"extra": 1}, "unexpected keys"),
])
def test_malformed_metrics_are_refused(tmp_path, bad, field):
    record = {**metrics()[0], **bad}
    with pytest.raises(PresetError, match=field):
        save_preset(tiny_sequential(), tmp_path / "p", metrics=[record])


def test_card_is_a_hub_card_generated_from_metrics(sequential_preset):
    _, folder = sequential_preset
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "keras"
    assert {"point-cloud", "deep-equilibrium", "keras"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0"
    assert card.data.datasets == ["synthetic_rings"]
    [result] = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_split) == ("accuracy", 0.75,
                                                                               "test")
    assert "| synthetic_rings | test | accuracy | 0.75 |" in card.text
    assert "arXiv" in card.text and "2503.01140" in card.text and "Geuter" in card.text
    assert 'ddeq_keras.from_pretrained("tiny_sequential")' in card.text


def test_card_edited_by_hand_is_refused(sequential_preset):
    _, folder = sequential_preset
    path = folder / "README.md"
    path.write_text(path.read_text().replace("| 0.75 |", "| 0.99 |"))
    with pytest.raises(PresetError, match="metrics table does not match"):
        validate_preset(folder)
    path.write_text("# A card without front matter\n")
    with pytest.raises(PresetError, match="README.md"):
        validate_preset(folder)


def test_unbuilt_model_and_reserved_metadata_are_refused(tmp_path):
    with pytest.raises(PresetError, match="not built"):
        save_preset(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "a")
    with pytest.raises(PresetError, match=r"\['config'\].*reserved"):
        save_preset(tiny_sequential(), tmp_path / "b", metadata={"config": 1})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
