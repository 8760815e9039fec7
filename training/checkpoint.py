"""Resume state of a training run: one safetensors file (or shards), written atomically.

The file holds everything a run needs to continue exactly where it stopped: the
model's weights, the state of every random-seed generator in the model (dropout
masks, particle noise), the optimizer's variables (step counter and moments) and,
in the safetensors metadata, the run's progress as JSON (epoch, step in the epoch,
the recipe). It is written to a temporary file in the same folder, flushed to disk
and renamed over the old one, so a run killed at any moment leaves either the
previous complete checkpoint or the new complete one, never half a file.

A resume state larger than ``MAX_SHARD_BYTES`` (a PCN or PointNet with Adam's moments
is ~40 MB) is written in shards, so that every file of a run that spans sessions stays
under the repository's 20 MB file limit and can be committed. The shards are split by
`huggingface_hub` (as a Hub model's weights are) and written first, under names of the
generation the main file does not reference (``checkpoint.a-00001-of-00003.safetensors``,
then ``.b-``, ...); the main file then names them with their SHA-256 and replaces the old
one atomically, as before; the previous generation's shards are removed only after that.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from keras import ops
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

__all__ = ["CheckpointError", "MAX_SHARD_BYTES", "load_checkpoint", "max_difference",
           "read_progress", "reshard", "save_checkpoint"]

# Tensor bytes per file: with the safetensors header well under the 20 MB file limit.
MAX_SHARD_BYTES = 16 * 2**20


class CheckpointError(ValueError):
    """A checkpoint that does not fit the run (other model, corrupted file)."""


def seed_states(model):
    """The state variables of every seed generator in ``model``, in a fixed order."""
    return [g.state for layer in model._flatten_layers(include_self=True)
            for g in getattr(layer, "_seed_generators", [])]


def _groups(model):
    return {"model": list(model.weights), "seed": seed_states(model),
            "optimizer": list(model.optimizer.variables)}


def save_checkpoint(path, model, progress, max_shard_bytes=MAX_SHARD_BYTES):
    """Writes the resume state of ``model`` (built, compiled) atomically.

    Args:
        path: the checkpoint file (``.safetensors``).
        model: the model being trained; its optimizer must be built.
        progress: JSON-serialisable dict (epoch, step, recipe, ...).
        max_shard_bytes: above this many bytes of tensors, they go to shard files next
            to ``path`` (one tensor larger than it gets a shard of its own).
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
    _write_state(path, tensors, metadata, max_shard_bytes)


def reshard(path, max_shard_bytes=MAX_SHARD_BYTES):
    """Rewrites a checkpoint (e.g. one file written before shards existed) in shards.

    The tensors and progress are kept bit for bit; only the files change.
    """
    path = Path(path)
    tensors, _, _ = _read(path)
    metadata = {k: v for k, v in _metadata(path).items() if k != "shards"}
    _write_state(path, tensors, metadata, max_shard_bytes)


def _write_state(path, tensors, metadata, max_shard_bytes):
    keep = []
    if sum(t.nbytes for t in tensors.values()) > max_shard_bytes:
        keep = _write_shards(path, tensors, metadata, max_shard_bytes)
        tensors = {}
    _write_atomically(path, tensors, metadata)
    for stale in _shard_files(path):  # only now is the previous generation unreferenced
        if stale.name not in keep:
            stale.unlink()


def _write_atomically(path, tensors, metadata):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    _fsync(tmp)  # on disk before it replaces the old one
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _fsync(path):
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _shard_files(path):
    # One shard has no "-00001-of-00002" suffix (a single tensor over the limit).
    return sorted(path.parent.glob(f"{path.stem}.[ab]*{path.suffix}"))


def _write_shards(path, tensors, metadata, max_shard_bytes):
    """Writes the shards of a generation the current main file does not use; their names.

    Adds the shard list (file names and SHA-256) to ``metadata``.
    """
    from huggingface_hub.serialization import split_state_dict_into_shards_factory

    in_use = ""
    if path.exists():
        try:
            in_use = json.loads(_metadata(path).get("shards", "[]"))[0]["file"]
        except (CheckpointError, ValueError, IndexError, KeyError):
            pass  # an unreadable or unsharded old file: either generation is free
    generation = "b" if in_use.startswith(f"{path.stem}.a") else "a"  # ".a-0001..." or ".a."
    split = split_state_dict_into_shards_factory(
        tensors, get_storage_size=lambda t: t.nbytes, max_shard_size=max_shard_bytes,
        filename_pattern=f"{path.stem}.{generation}{{suffix}}{path.suffix}")
    shards = []
    for name, keys in split.filename_to_tensors.items():
        save_file({k: tensors[k] for k in keys}, str(path.parent / name))
        _fsync(path.parent / name)
        shards.append({"file": name, "sha256": _sha256(path.parent / name)})
    metadata["shards"] = json.dumps(shards)
    return [shard["file"] for shard in shards]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _metadata(path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint: {error}") from None


def _load_shards(path, listing):
    tensors = {}
    try:
        shards = [(shard["file"], shard["sha256"]) for shard in json.loads(listing)]
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: its list of shards is not readable ({error}).") from None
    for name, sha256 in shards:
        file = Path(path).parent / name
        if not file.exists():
            raise CheckpointError(f"{path}: its shard {file.name} is missing (a resume "
                                  "state is the main file and all its shards).")
        if _sha256(file) != sha256:
            raise CheckpointError(f"{path}: its shard {file.name} is damaged (SHA-256 "
                                  "differs from the one the main file recorded).")
        tensors.update(load_file(str(file)))
    return tensors


def _read(path, tensors=True):
    metadata = _metadata(path)
    try:
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
    if tensors is not None and "shards" in metadata:
        tensors.update(_load_shards(path, metadata["shards"]))
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
