"""The model zoo: preset folders, one-call loading and publishing to the Hugging Face Hub.

A preset is a folder (or a Hub model repo with the same files): `config.json`,
`model.safetensors`, `README.md` (the model card) and `metrics.json`.

- `save_preset(model, folder, ...)` writes one and validates it;
- `validate_preset(folder)` checks one;
- `load_preset(name_or_path, revision=None)` loads a registry name, a folder or
  ``hf://owner/name[@revision]``, refusing anything in a config that is not a
  ddeq_keras or Keras class, and any weights file that is not safetensors;
- `list_presets()` lists the registry;
- `publish(folder, "owner/name")` uploads a validated folder.

Example (a tiny, untrained DDEQ; loading from the Hub needs the network):
>>> from ddeq_keras import presets
>>> from ddeq_keras.models import create_model
>>> model = create_model("ddeq_mnist", latent_dim=16, hidden_dim=4, bilinear_dim=4,
...                      num_heads=2, ff_dim=16)
>>> folder = presets.save_preset(model, "my_preset")  # written, then validated
>>> sorted(path.name for path in folder.iterdir())
['README.md', 'config.json', 'model.safetensors']
>>> restored = presets.load_preset(folder)
>>> all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), model.get_weights()))
True
>>> model = presets.load_preset("hf://owner/name@v1")  # doctest: +SKIP
"""

from ddeq_keras.presets.errors import PresetError
from ddeq_keras.presets.format import PRESET_FILES
from ddeq_keras.presets.loader import load_preset
from ddeq_keras.presets.preset import save_preset, validate_preset
from ddeq_keras.presets.publish import publish
from ddeq_keras.presets.registry import PresetEntry, list_presets

__all__ = [
    "PRESET_FILES",
    "PresetEntry",
    "PresetError",
    "list_presets",
    "load_preset",
    "publish",
    "save_preset",
    "validate_preset",
]
