"""A model's variables to and from `model.safetensors`, checked before any assignment.

Keys. Each variable is keyed by its Keras `variable.path` relative to the model.
Paths are built from layer names, which the model's config stores, so a model
rebuilt from its config gets the same keys on any backend; two things are
normalised: the model's own name in front (Keras adds it only to layers built inside
the model's scope, which differs between a constructed and a deserialised model),
and the number in the names of `SeedGenerator` states (``seed_generator_4/...``, from
a process-wide counter), replaced by the generator's rank in ``model.variables``.
The file also records the keys in ``model.variables`` order; a model whose keys come
in another order (auto-named layers that the config does not pin) is refused rather
than loaded with its weights swapped.

Dtypes. Floating-point variables are stored as float32 (and cast to the variable's
dtype when read); integer variables (seed states: uint32 on JAX, int32 on PyTorch,
int64 on TensorFlow) as int64 and checked to fit the reading backend's dtype.

The file is read with `safetensors.safe_open(framework="np")` only after its header
has been recognised: a file that is not safetensors (say, a pickle) is refused
without being parsed, and nothing is ever unpickled.
"""

import collections
import json
import os
import re
import struct

import keras
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ddeq_keras.presets.errors import PresetError

# Header size limit of the safetensors format (100 MB).
_MAX_HEADER = 100_000_000
_SEED_STATE = re.compile(r"(^|/)seed_generator(?:_\d+)?/seed_generator_state$")
_ORDER = "variable_order"
_FLOAT = "F32"
_INT = "I64"
_BOOL = "BOOL"


def variable_keys(model):
    """The stable key of each of `model.variables`, in order (see module docstring).

    Args:
        model: a built Keras model.

    Returns:
        A list of strings, one per variable.

    Raises:
        PresetError: if two variables would get the same key.
    """
    prefix = f"{model.name}/"
    keys, rank = [], 0
    for variable in model.variables:
        path = variable.path[len(prefix):] if variable.path.startswith(prefix) else variable.path
        path, found = _SEED_STATE.subn(rf"\g<1>seed_generator_{rank}/seed_generator_state", path)
        rank += found
        keys.append(path)
    duplicates = sorted(key for key, count in collections.Counter(keys).items() if count > 1)
    if duplicates:
        raise PresetError(f"variables of {model.name!r} share the paths {duplicates}; "
                          "give their layers distinct names")
    return keys


def _kind(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bool":
        return _BOOL
    if "int" in dtype:
        return _INT
    if "float" in dtype:
        return _FLOAT
    raise PresetError(f"variables of dtype {dtype} cannot be stored in a preset")


_NUMPY = {_FLOAT: "float32", _INT: "int64", _BOOL: "bool"}


def save_weights(model, path):
    """Writes every variable of `model` (trainable or not) to a safetensors file.

    Args:
        model: a built Keras model.
        path: the file to write.
    """
    tensors = {}
    for key, variable in zip(variable_keys(model), model.variables):
        value = keras.ops.convert_to_numpy(variable)
        tensors[key] = np.ascontiguousarray(value, dtype=_NUMPY[_kind(variable.dtype)])
    save_file(tensors, str(path),
              metadata={"format": "ddeq_keras.preset", _ORDER: json.dumps(list(tensors))})


def _check_header(path):
    """Refuses, without parsing it further, a file that is not safetensors."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = os.path.getsize(path)
    except OSError as error:
        raise PresetError(f"cannot read {name}: {error}") from None
    header_len = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else None
    if header_len is None or not 0 < header_len <= min(_MAX_HEADER, size - 8) or head[8:9] != b"{":
        hint = " (its first byte 0x80 marks a Python pickle)" if head[:1] == b"\x80" else ""
        raise PresetError(
            f"{path} is not a safetensors file{hint}; it was not loaded (presets never "
            "unpickle). Re-export the weights with ddeq_keras.presets.save_preset"
        )


def _describe(key, shape, kind):
    return f"{key} {tuple(shape)} {kind}"


def load_weights(model, path):
    """Checks a safetensors file against `model`'s variables, then assigns them.

    Every variable's key, shape and dtype kind is compared with the file before
    any variable is assigned, so a mismatched file leaves the model untouched.

    Args:
        model: a built Keras model (fresh from its config).
        path: a `model.safetensors` file.

    Raises:
        PresetError: for a file that is not safetensors, or that lists missing,
            unexpected or mismatched variables (all of them, by key).
    """
    _check_header(path)
    keys = variable_keys(model)
    try:
        with safe_open(str(path), framework="np") as f:
            stored = {key: f.get_slice(key) for key in f.keys()}
            stored = {key: (tuple(s.get_shape()), s.get_dtype()) for key, s in stored.items()}
            problems = _mismatches(model, keys, stored)
            if problems:
                raise PresetError(
                    f"the weights in {path} do not fit the model {model.name!r} built from "
                    "config.json (nothing was assigned):\n  " + "\n  ".join(problems)
                )
            _check_order(keys, (f.metadata() or {}).get(_ORDER), path)
            values = [f.get_tensor(key) for key in keys]
    except (SafetensorError, json.JSONDecodeError) as error:
        raise PresetError(f"{path} is not a readable safetensors file: {error}") from None
    for key, variable, value in zip(keys, model.variables, values):
        dtype = keras.backend.standardize_dtype(variable.dtype)
        if _kind(dtype) == _INT and value.size:
            info = np.iinfo(dtype)
            if value.min() < info.min or value.max() > info.max:
                raise PresetError(f"{key} in {path} holds values outside the range of "
                                  f"{dtype} (nothing was assigned)")
    for variable, value in zip(model.variables, values):
        dtype = keras.backend.standardize_dtype(variable.dtype)
        # Integers are cast here (all NumPy types); floats by Keras, which knows bfloat16.
        variable.assign(value.astype(dtype) if _kind(dtype) != _FLOAT else value)


def _check_order(keys, recorded, path):
    """Refuses a file whose variables were written in another order than `keys`."""
    try:
        order = json.loads(recorded) if recorded is not None else None
    except json.JSONDecodeError:
        order = None
    if not isinstance(order, list):
        raise PresetError(f"{path} records no variable order: it was not written by "
                          "ddeq_keras.presets.save_preset")
    if order != keys:
        moved = [f"{a} (file) vs {b} (model)" for a, b in zip(order, keys) if a != b][:5]
        raise PresetError(
            f"{path} lists the model's variables in another order ({'; '.join(moved)}): "
            "some layer names are not fixed by the config (auto-named sublayers), so the "
            "weights cannot be matched safely; nothing was assigned. Name those layers"
        )


def _mismatches(model, keys, stored):
    problems = []
    for key, variable in zip(keys, model.variables):
        if key not in stored:
            problems.append(f"missing: {_describe(key, variable.shape, _kind(variable.dtype))}")
            continue
        shape, kind = stored[key]
        expected = (tuple(variable.shape), _kind(variable.dtype))
        if (shape, kind) != expected:
            problems.append(f"mismatched: {key} is {shape} {kind} in the file, the model "
                            f"expects {expected[0]} {expected[1]}")
    problems.extend(f"unexpected: {_describe(key, *stored[key])}"
                    for key in sorted(set(stored) - set(keys)))
    return problems
