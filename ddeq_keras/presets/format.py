"""The files of a preset folder: names, `config.json` and `metrics.json`.

A preset is a folder (the same files as its Hub repo):

- ``config.json``: ``format_version``, ``class_name``, ``config`` (the model's
  `keras.saving.serialize_keras_object`, without compile state), ``build_config``,
  ``keras_version``, ``ddeq_keras_version`` and the caller's metadata (class names,
  point dimension, normalisation, solver, ...);
- ``model.safetensors``: the weights (see `ddeq_keras.presets.weights`);
- ``README.md``: the Hub model card (see `ddeq_keras.presets.card`);
- ``metrics.json``: the measured numbers, a list of records with exactly the keys
  `METRIC_KEYS`.
"""

import datetime
import json
import math
from pathlib import Path

from ddeq_keras.presets.errors import PresetError
from ddeq_keras.presets.safety import check_config

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
METRICS_FILE = "metrics.json"
# Every file a preset may hold; the first three are required.
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, METRICS_FILE)
REQUIRED_FILES = PRESET_FILES[:3]

RESERVED_KEYS = ("format_version", "class_name", "config", "build_config", "keras_version",
                 "ddeq_keras_version")
METRIC_KEYS = ("dataset", "split", "metric", "value", "backend", "hardware", "date", "command")
BACKENDS = ("jax", "tensorflow", "torch")


def _dump(obj, path, what):
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise PresetError(f"{what} is not JSON-serialisable: {error}") from None
    Path(path).write_text(text + "\n", encoding="utf-8")


def _load(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PresetError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PresetError(f"{path} is not valid JSON: {error}") from None


def config_document(model, metadata=None):
    """The content of `config.json` for a built model.

    Args:
        model: a built Keras model whose classes are Keras built-ins or registered.
        metadata: extra JSON-serialisable keys (not one of `RESERVED_KEYS`).

    Returns:
        A dict.
    """
    import keras

    import ddeq_keras

    metadata = dict(metadata or {})
    clashes = sorted(set(metadata) & set(RESERVED_KEYS))
    if clashes:
        raise PresetError(f"metadata keys {clashes} are reserved for the preset format")
    if not model.built:
        raise PresetError(f"model {model.name!r} is not built: call it or build it first")
    serialized = keras.saving.serialize_keras_object(model)
    # Presets carry architecture and weights; training state is the user's to set.
    serialized.pop("compile_config", None)
    return {
        "format_version": FORMAT_VERSION,
        "class_name": keras.saving.get_registered_name(type(model)),
        "config": serialized,
        "build_config": model.get_build_config(),
        "keras_version": keras.__version__,
        "ddeq_keras_version": ddeq_keras.__version__,
        **metadata,
    }


def write_config(document, folder):
    """Writes `config.json` into `folder`."""
    _dump(document, Path(folder) / CONFIG_FILE, "config.json")


def read_config(folder):
    """Reads `config.json`, checks its format and allow-lists its Keras config.

    Returns:
        The parsed document.

    Raises:
        PresetError: if it is missing, unparsable, of an unknown format version, or
            names a class or function outside the allow-list (see `safety`).
    """
    path = Path(folder) / CONFIG_FILE
    document = _load(path)
    if not isinstance(document, dict):
        raise PresetError(f"{path} must hold a JSON object")
    missing = [key for key in RESERVED_KEYS if key not in document]
    if missing:
        raise PresetError(f"{path} lacks the keys {missing}")
    version = document["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise PresetError(f"{path} has format_version {version!r}; this ddeq_keras reads "
                          f"versions 1 to {FORMAT_VERSION}: upgrade ddeq_keras")
    if not isinstance(document["config"], dict):
        raise PresetError(f"{path}: 'config' must be a Keras config object")
    check_config(document["config"], where=f"{CONFIG_FILE}:config")
    check_config(document["build_config"], where=f"{CONFIG_FILE}:build_config")
    return document


def validate_metrics(metrics, source="metrics"):
    """Checks a list of metric records; returns it as a list of dicts.

    Each record has exactly `METRIC_KEYS`: non-empty strings, a finite number for
    ``value``, a known backend and an ISO-8601 ``date``.

    Raises:
        PresetError: naming the record and the field at fault.
    """
    if not isinstance(metrics, (list, tuple)) or not metrics:
        raise PresetError(f"{source} must be a non-empty list of records")
    records = []
    for i, record in enumerate(metrics):
        where = f"{source}[{i}]"
        if not isinstance(record, dict):
            raise PresetError(f"{where} must be an object with keys {list(METRIC_KEYS)}")
        missing = [k for k in METRIC_KEYS if k not in record]
        extra = sorted(set(record) - set(METRIC_KEYS))
        if missing or extra:
            raise PresetError(f"{where}: missing keys {missing}, unexpected keys {extra}")
        value = record["value"]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise PresetError(f"{where}: value must be a finite number, got {value!r}")
        for key in METRIC_KEYS:
            if key != "value" and not (isinstance(record[key], str) and record[key].strip()):
                raise PresetError(f"{where}: {key} must be a non-empty string")
        if record["backend"] not in BACKENDS:
            raise PresetError(f"{where}: backend must be one of {BACKENDS}")
        try:
            datetime.datetime.fromisoformat(record["date"])
        except ValueError:
            raise PresetError(f"{where}: date {record['date']!r} is not ISO 8601") from None
        records.append({key: record[key] for key in METRIC_KEYS})
    return records


def write_metrics(metrics, folder):
    """Validates and writes `metrics.json`; returns the records written."""
    records = validate_metrics(metrics)
    _dump(records, Path(folder) / METRICS_FILE, "metrics")
    return records


def read_metrics(folder):
    """The validated records of `folder`'s `metrics.json`, or None if it has none."""
    path = Path(folder) / METRICS_FILE
    if not path.exists():
        return None
    return validate_metrics(_load(path), source=str(path))
