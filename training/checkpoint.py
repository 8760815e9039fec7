"""Resume state of a training run: one safetensors file, written atomically.

The file holds everything a run needs to continue exactly where it stopped: the
model's weights, the state of every random-seed generator in the model (dropout
masks, particle noise), the optimizer's variables (step counter and moments) and,
in the safetensors metadata, the run's progress as JSON (epoch, step in the epoch,
the recipe). It is written to a temporary file in the same folder, flushed to disk
and renamed over the old one, so a run killed at any moment leaves either the
previous complete checkpoint or the new complete one, never half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from keras import ops
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

__all__ = ["CheckpointError", "load_checkpoint", "max_difference", "read_progress",
           "save_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint that does not fit the run (other model, corrupted file)."""


def seed_states(model):
    """The state variables of every seed generator in ``model``, in a fixed order."""
    return [g.state for layer in model._flatten_layers(include_self=True)
            for g in getattr(layer, "_seed_generators", [])]


def _groups(model):
    return {"model": list(model.weights), "seed": seed_states(model),
            "optimizer": list(model.optimizer.variables)}


def save_checkpoint(path, model, progress):
    """Writes the resume state of ``model`` (built, compiled) atomically.

    Args:
        path: the checkpoint file (``.safetensors``).
        model: the model being trained; its optimizer must be built.
        progress: JSON-serialisable dict (epoch, step, recipe, ...).
    """
    path = Path(path)
    tensors, names = {}, {}
    for group, variables in _groups(model).items():
        names[group] = [v.path for v in variables]
        for i, v in enumerate(variables):
            value = ops.convert_to_numpy(v)
            # `ascontiguousarray` makes scalars (the step counter) 1-D: keep the shape.
            tensors[f"{group}/{i:05d}"] = np.ascontiguousarray(value).reshape(value.shape)
    metadata = {"progress": json.dumps(progress), "names": json.dumps(names)}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    with open(tmp, "rb") as handle:  # on disk before it replaces the old one
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _read(path, tensors=True):
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path)) if tensors else None
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint: {error}") from None
    if "progress" not in metadata or "names" not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not a training checkpoint.")
    try:
        progress, names = json.loads(metadata["progress"]), json.loads(metadata["names"])
    except ValueError as error:
        raise CheckpointError(f"{path} is not a readable checkpoint: its metadata is not "
                              f"valid JSON ({error}).") from None
    return tensors, progress, names


def read_progress(path):
    """The progress dict stored in a checkpoint (without loading any weights)."""
    return _read(path, tensors=False)[1]


def load_checkpoint(path, model):
    """Restores weights, seed states and optimizer state; returns the progress dict.

    Every variable is checked (count, shape) before anything is assigned, so a
    checkpoint of another model or recipe is refused with the first mismatch named.
    """
    tensors, progress, names = _read(path)
    plan = []
    for group, variables in _groups(model).items():
        saved = names.get(group, [])
        if len(saved) != len(variables):
            raise CheckpointError(
                f"{path}: {len(saved)} {group} variables saved, this run has "
                f"{len(variables)}; the checkpoint is from another model or recipe.")
        for i, v in enumerate(variables):
            key = f"{group}/{i:05d}"
            if key not in tensors:
                raise CheckpointError(f"{path}: tensor {key} ({saved[i]!r}) is missing; "
                                      "the file is damaged.")
            value = tensors[key]
            if tuple(value.shape) == (1,) and tuple(v.shape) == ():
                value = value.reshape(())  # a scalar, stored 1-D by earlier versions
            if tuple(value.shape) != tuple(v.shape):
                raise CheckpointError(
                    f"{path}: {group} variable {saved[i]!r} has shape {value.shape}, "
                    f"this run's {v.path!r} has {tuple(v.shape)}.")
            plan.append((v, value))
    for v, value in plan:
        v.assign(value)
    return progress


def max_difference(path_a, path_b):
    """Largest absolute difference per group (model, seed, optimizer) of two checkpoints.

    Variables are matched by position, as `load_checkpoint` does (names may differ:
    Keras numbers the names of optimizers created in one process, ``adam_1``).

    Raises:
        CheckpointError: if they do not hold as many variables of the same shapes.
    """
    tensors_a, _, names_a = _read(path_a)
    tensors_b, _, _ = _read(path_b)
    if tensors_a.keys() != tensors_b.keys():
        raise CheckpointError(f"{path_a} and {path_b} hold different variables.")
    worst = {group: 0.0 for group in names_a}
    for key, a in tensors_a.items():
        b = tensors_b[key]
        if a.shape != b.shape and a.size == b.size == 1:  # scalars stored 1-D before
            a, b = a.reshape(()), b.reshape(())
        if a.shape != b.shape:
            raise CheckpointError(f"{key}: shapes {a.shape} and {b.shape}.")
        if a.size:
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
            group = key.split("/")[0]
            worst[group] = max(worst[group], float(diff))
    return worst
