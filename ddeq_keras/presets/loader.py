"""`load_preset`: a registry name, a local folder or a Hub address to a Keras model.

Order of work, so that nothing untrusted runs: find the folder (download if needed,
check pinned hashes), read `config.json` and allow-list every class in it
(`safety`), deserialise with Keras's ``safe_mode=True``, build, then check the weights
file against every variable and only then assign (`weights`).
"""

import os
from pathlib import Path

from ddeq_keras.presets import hub, registry
from ddeq_keras.presets.errors import PresetError
from ddeq_keras.presets.format import CONFIG_FILE, PRESET_FILES, WEIGHTS_FILE, read_config
from ddeq_keras.presets.weights import load_weights


def _looks_like_path(name):
    return isinstance(name, os.PathLike) or os.sep in name or "/" in name or name.startswith(".")


def resolve(name_or_path, revision=None):
    """The local folder of a preset, downloading and verifying it if needed.

    Args:
        name_or_path: a registry name, a folder, or ``hf://owner/name[@revision]``.
        revision: a Hub branch, tag or commit (only with a Hub address).

    Returns:
        A `pathlib.Path`.

    Raises:
        PresetError: for an unknown name (listing the known ones), a revision where
            none applies, a failed download or a hash mismatch.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise PresetError(f"expected a preset name, folder or hf:// address, got "
                          f"{type(name_or_path).__name__}")
    if isinstance(name_or_path, str) and name_or_path.startswith(hub.SCHEME):
        repo_id, rev = hub.parse_uri(name_or_path, revision)
        return hub.download(repo_id, rev, files=PRESET_FILES)
    if not _looks_like_path(name_or_path) and name_or_path in registry.PRESETS:
        entry = registry.get_entry(name_or_path)
        if revision not in (None, entry.revision):
            if not entry.on_hub:
                raise PresetError(f"registry preset {name_or_path!r} is not on the Hub yet "
                                  f"(it ships in zoo/ only): revision={revision!r} cannot "
                                  "apply; load it without a revision")
            raise PresetError(f"registry preset {name_or_path!r} is pinned to {entry.revision}; "
                              f"for revision {revision!r} load hf://{entry.repo_id}@{revision}")
        shipped = registry.shipped_folder(name_or_path)
        if shipped is not None:
            registry.verify_files(entry, shipped, "the zoo/ folder of this checkout")
            return shipped
        if not entry.on_hub:
            raise PresetError(
                f"registry preset {name_or_path!r} is not published on the Hub yet: it ships "
                f"in the zoo/ folder of a ddeq-keras source checkout, and {registry.ZOO_DIR} "
                "has no copy. Install from a checkout (`pip install -e .` in it) or pass the "
                "preset folder itself")
        folder = hub.download(entry.repo_id, entry.revision, files=list(entry.sha256))
        registry.verify_files(entry, folder, "the Hub download")
        return folder
    folder = Path(name_or_path)
    if folder.is_dir():
        if revision is not None:
            raise PresetError(f"revision={revision!r} applies to hf:// addresses and registry "
                              f"names, not to the local folder {folder}")
        return folder
    if _looks_like_path(name_or_path):
        raise PresetError(f"preset folder {folder} does not exist")
    registry.get_entry(name_or_path)  # raises, listing the known names


def load_folder(folder, expected_class=None):
    """Builds the model of a preset folder and loads its weights (see module doc).

    Args:
        folder: a preset folder.
        expected_class: a Keras class the model must be an instance of, or None.

    Returns:
        The `keras.Model`.

    Raises:
        PresetError: naming the file, class or variable at fault.
    """
    import keras

    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise PresetError(f"preset folder {folder} has no {name}")
    document = read_config(folder)  # allow-listed before anything is deserialised
    try:
        model = keras.saving.deserialize_keras_object(document["config"], safe_mode=True)
    except PresetError:
        raise
    except Exception as error:  # Keras raises several types for configs it cannot use
        raise PresetError(f"{folder / CONFIG_FILE}: Keras could not rebuild "
                          f"{document['class_name']!r} from it: {error}") from error
    if not isinstance(model, keras.Model):
        raise PresetError(f"{folder / CONFIG_FILE} describes a {type(model).__name__}, "
                          "not a keras.Model")
    if expected_class is not None and not isinstance(model, expected_class):
        raise PresetError(f"preset {folder} holds a {type(model).__name__}, not a "
                          f"{expected_class.__name__}")
    if not model.built:
        model.build_from_config(document["build_config"])
    load_weights(model, folder / WEIGHTS_FILE)
    return model


def load_preset(name_or_path, revision=None, *, expected_class=None):
    """Loads a preset model in one call, on any backend.

    Args:
        name_or_path: a registry name (`list_presets()`), a local preset folder, or
            ``hf://owner/name`` / ``hf://owner/name@revision`` (branch, tag or commit).
        revision: the Hub revision, as an alternative to ``@revision``.
        expected_class: a Keras class the model must be an instance of (the tasks'
            ``from_preset`` pass their own class).

    Returns:
        The `keras.Model`, with its weights.

    Raises:
        PresetError: see `resolve` and `load_folder`.

    Example (a local folder; a Hub address needs the network):
    >>> from ddeq_keras.models import DDEQClassifier, create_model
    >>> from ddeq_keras.presets import load_preset, save_preset
    >>> folder = save_preset(create_model("ddeq_mnist", latent_dim=16, hidden_dim=4,
    ...                                   bilinear_dim=4, num_heads=2, ff_dim=16),
    ...                      "my_preset")
    >>> type(load_preset(folder, expected_class=DDEQClassifier)).__name__
    'DDEQClassifier'
    >>> load_preset("no_such_preset")
    Traceback (most recent call last):
    ...
    ddeq_keras.presets.errors.PresetError: unknown preset 'no_such_preset'; ...
    >>> model = load_preset("hf://owner/ddeq-mnist@v1")  # doctest: +SKIP
    """
    return load_folder(resolve(name_or_path, revision), expected_class=expected_class)
