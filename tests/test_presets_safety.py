"""Untrusted presets: nothing in a config or weights file runs; names resolve safely.

Each planted file is refused with a PresetError that names the problem, and the test
proves that nothing was run: Keras's deserialiser is never called, a planted module
is never imported and a pickle's payload never creates its marker file.
"""

import json
import pickle
import sys

import keras
import numpy as np
import pytest

from ddeq_keras.presets import PresetError, load_preset, registry, save_preset
from ddeq_keras.presets import hub as hub_module
from ddeq_keras.presets.registry import PresetEntry, entry_for_folder
from preset_helpers import metrics, outputs, sequential_inputs, tiny_sequential


@pytest.fixture
def preset(tmp_path):
    model = tiny_sequential()
    return model, save_preset(model, tmp_path / "tiny", metrics=metrics())


@pytest.fixture
def deserialise_calls(monkeypatch):
    """Records every call of Keras's deserialiser (it must never see a refused config)."""
    calls = []
    original = keras.saving.deserialize_keras_object

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "deserialize_keras_object", spy)
    return calls


def _plant(folder, edit):
    path = folder / "config.json"
    document = json.loads(path.read_text())
    edit(document["config"]["config"]["layers"])
    path.write_text(json.dumps(document))


def _class_from_os(layers):
    layers[1] = {"module": "os", "class_name": "system", "config": {"command": "true"},
                 "registered_name": None}


def _function_from_os(layers):
    layers[1]["config"]["activation"] = {"module": "os", "class_name": "function",
                                         "config": "system", "registered_name": "system"}


def _lambda_code(layers):
    layers[1]["config"]["activation"] = {
        "module": "builtins", "class_name": "__lambda__", "registered_name": None,
        "config": {"value": "4wAAAAAAAAA=", "function_type": "lambda"}}


def _lambda_layer(layers):
    layer = keras.layers.Lambda(lambda x: x * 2, name="doubler")
    layers.insert(2, json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))


@keras.saving.register_keras_serializable(package="presets_test_other")
class OtherDense(keras.layers.Dense):
    """A class registered by another package than ddeq_keras."""


def _other_package(layers):
    layers[1]["registered_name"] = "presets_test_other>OtherDense"


@pytest.mark.parametrize("edit,message", [
    (_class_from_os, r"class os\.system .*neither registered by ddeq_keras nor a Keras built-in"),
    (_function_from_os, r"function os\.system .*neither registered"),
    (_lambda_code, r"serialized code \('__lambda__'\)"),
    (_lambda_layer, r"a Lambda layer .*carries code"),
    (_other_package, r"registered by a package other than ddeq_keras"),
])
def test_config_outside_the_allow_list_is_refused_before_deserialising(
        preset, deserialise_calls, edit, message):
    _, folder = preset
    _plant(folder, edit)
    with pytest.raises(PresetError, match=message):
        load_preset(folder)
    assert deserialise_calls == []


def test_class_from_an_arbitrary_module_is_never_imported(preset, tmp_path, monkeypatch):
    _, folder = preset
    marker = tmp_path / "imported.txt"
    (tmp_path / "planted_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _plant(folder, lambda layers: layers.insert(1, {
        "module": "planted_module", "class_name": "Evil", "config": {}, "registered_name": None}))
    with pytest.raises(PresetError, match=r"planted_module\.Evil"):
        load_preset(folder)
    assert "planted_module" not in sys.modules and not marker.exists()


class _Payload:
    """Unpickling this creates the file `marker` (what a malicious pickle could do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_disguised_as_safetensors_is_refused_without_unpickling(preset, tmp_path):
    _, folder = preset
    # The payload is live: unpickling a copy creates its marker ...
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(_Payload(str(control)))).close()
    assert control.exists()
    # ... but loading the preset must not unpickle the planted one.
    marker = tmp_path / "unpickled.txt"
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(PresetError, match=r"not a safetensors file \(.*pickle\)"):
        load_preset(folder)
    assert not marker.exists()


def test_unknown_name_lists_the_registered_presets(monkeypatch):
    monkeypatch.setattr(registry, "PRESETS", {})  # independent of the real zoo
    with pytest.raises(PresetError, match=r"unknown preset 'nope'; registered presets: none yet"):
        load_preset("nope")
    entry = PresetEntry("org/tiny", "0" * 40, {n: "0" * 64 for n in
                                               ("config.json", "model.safetensors", "README.md")})
    monkeypatch.setitem(registry.PRESETS, "tiny_registered", entry)
    with pytest.raises(PresetError, match="registered presets: tiny_registered"):
        load_preset("nope")
    with pytest.raises(PresetError, match="does not exist"):
        load_preset("./nope")


@pytest.mark.parametrize("uri", ["hf://org", "hf://org/name/extra", "hf://org/name@"])
def test_malformed_hub_address_is_refused(uri):
    with pytest.raises(PresetError, match="hf://"):
        load_preset(uri)


def test_registry_entries_must_pin_a_commit():
    with pytest.raises(PresetError, match="full commit sha"):
        PresetEntry("org/tiny", "main", {})


def shipped_offline(preset, tmp_path, monkeypatch, name):
    """The preset's model and its copy as ``zoo/<name>`` of a checkout with no network."""
    model, _ = preset
    zoo = tmp_path / "zoo"
    shipped = save_preset(model, zoo / name, metrics=metrics())

    def no_network(*args, **kwargs):
        raise AssertionError("a preset shipped in zoo/ must not be downloaded")

    monkeypatch.setattr(hub_module, "download", no_network)
    monkeypatch.setattr(registry, "ZOO_DIR", zoo)
    return model, shipped


def test_shipped_zoo_preset_loads_without_network_and_is_hash_checked(preset, tmp_path,
                                                                      monkeypatch):
    model, shipped = shipped_offline(preset, tmp_path, monkeypatch, "tiny_zoo")
    monkeypatch.setitem(registry.PRESETS, "tiny_zoo",
                        entry_for_folder(shipped, "org/tiny_zoo", "1" * 40))
    x = sequential_inputs()
    np.testing.assert_array_equal(outputs(load_preset("tiny_zoo"), x), outputs(model, x))
    with pytest.raises(PresetError, match="pinned to 1111"):
        load_preset("tiny_zoo", revision="v2")
    data = bytearray((shipped / "model.safetensors").read_bytes())
    data[-1] ^= 1  # one flipped bit in the last weight
    (shipped / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(PresetError, match=r"sha256 mismatch for model\.safetensors"):
        load_preset("tiny_zoo")


def test_zoo_only_preset_loads_from_zoo_and_nowhere_else(preset, tmp_path, monkeypatch):
    # A preset committed under zoo/ before it is published: no Hub repo, hashes pinned.
    model, shipped = shipped_offline(preset, tmp_path, monkeypatch, "tiny_local")
    entry = entry_for_folder(shipped, None, None)
    assert not entry.on_hub
    monkeypatch.setitem(registry.PRESETS, "tiny_local", entry)
    x = sequential_inputs()
    np.testing.assert_array_equal(outputs(load_preset("tiny_local"), x), outputs(model, x))
    with pytest.raises(PresetError, match="not on the Hub yet"):
        load_preset("tiny_local", revision="v2")
    (shipped / "README.md").write_text("edited card")
    with pytest.raises(PresetError, match=r"sha256 mismatch for README\.md of the zoo/ copy"):
        load_preset("tiny_local")
    monkeypatch.setattr(registry, "ZOO_DIR", tmp_path / "no_zoo")  # e.g. a wheel install
    with pytest.raises(PresetError, match="not published on the Hub yet.*pip install -e"):
        load_preset("tiny_local")
    with pytest.raises(PresetError, match="give both a Hub repo and a revision, or neither"):
        PresetEntry("org/tiny", None, {})


def test_revision_is_refused_for_a_local_folder(preset):
    _, folder = preset
    with pytest.raises(PresetError, match="not to the local folder"):
        load_preset(folder, revision="v1")
