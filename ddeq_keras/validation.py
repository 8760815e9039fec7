"""Input checks that raise a clear ``ValueError`` before any work is done.

Shape and dtype checks always run. Value checks (NaN / infinite or
out-of-range coordinates of valid points, samples without a valid point) need
concrete values, so they run on eager calls at the model boundary only (a
model's inputs, once per call), and cheaply: one scalar reduction is copied to
the host, the details are computed only when it fails. Under ``jit`` /
``tf.function`` tensors are symbolic and only shapes are checked; that is why
the models' `predict` / `evaluate` / `fit` check NumPy batches on the host
before compiling anything (`check_cloud_arrays`), and the data pipeline and
the preprocessor validate values before batching. Layers inside a model (the
equilibrium layer) check shapes only.

Padding rows (mask False) are never inspected: their values are ignored (the
models zero them), so padding may hold anything, NaN included.
"""

import keras
import numpy as np
from keras import ops

from ddeq_keras import backend

# Largest coordinate magnitude a model takes in a *preprocessed* batch. Models
# expect normalised clouds (|x| ~ 1); past ~1e18 float32 sums of squares over a
# cloud overflow (a Riesz distance squares its coordinates), so anything near
# that is a cloud that skipped normalisation. Raw clouds (lists of arrays) go
# through the preprocessor, which normalises any finite scale.
MAX_COORDINATE = 1e15


def _static_shape(x):
    # The static shape (None for unknown dims under tf.function), never tensors.
    return tuple(None if d is None else int(d) for d in x.shape)


def _all_true(condition):
    """``bool(all(condition))`` for concrete tensors (one scalar to the host); None if traced."""
    if not backend.is_concrete(condition):
        return None
    return bool(ops.convert_to_numpy(ops.all(condition)))


def dtype_name(x):
    """The standard Keras name of ``x``'s dtype (NumPy's name if Keras has none)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.asarray(x).dtype
    try:
        return keras.backend.standardize_dtype(dtype)
    except Exception:  # strings, objects: Keras has no name for them
        return str(getattr(dtype, "name", dtype))


def _is_real_number(dtype):
    return dtype.startswith(("float", "int", "uint", "bfloat"))


def check_dtype(name, x, allow_bool=False):
    """``x`` must hold real numbers (and booleans if ``allow_bool``: masks)."""
    dtype = dtype_name(x)
    if _is_real_number(dtype) or (allow_bool and dtype == "bool"):
        return dtype
    kinds = "booleans or numbers" if allow_bool else "real numbers (float or int)"
    raise ValueError(f"`{name}` must hold {kinds}; got dtype {dtype}.")


def _check_shape(name, shape, expected_dim):
    if len(shape) != 3:
        raise ValueError(
            f"`{name}` must have rank 3 (batch, num_points, dim); got shape {shape}."
        )
    if expected_dim is not None and shape[-1] is not None and shape[-1] != expected_dim:
        raise ValueError(
            f"`{name}` must have {expected_dim} features in its last axis; got shape {shape}."
        )
    if shape[1] == 0:
        raise ValueError(f"`{name}` is empty: it has no points (shape {shape}).")


def _check_mask_shape(name, shape, points_name, points_shape):
    if len(shape) != 2 or any(
        a is not None and b is not None and a != b for a, b in zip(shape, points_shape[:2])
    ):
        raise ValueError(
            f"`{name}` must have shape (batch, num_points) = {points_shape[:2]} to match "
            f"`{points_name}`; got {shape}."
        )


def _raise_bad_values(name, values, valid):
    """The detailed error for NumPy ``values`` whose ``valid`` points fail the range test."""
    values = np.asarray(values, dtype="float64")
    valid = np.ones(values.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    finite = np.all(np.isfinite(values), axis=-1)
    non_finite = valid & ~finite
    if non_finite.any():
        samples = np.flatnonzero(np.any(non_finite, axis=1))
        raise ValueError(
            f"`{name}` has {int(non_finite.sum())} point(s) with NaN or infinite coordinates "
            f"(sample(s) {samples[:10].tolist()})."
        )
    big = valid & np.any(np.abs(np.where(np.isfinite(values), values, 0)) > MAX_COORDINATE, -1)
    if big.any():
        samples = np.flatnonzero(np.any(big, axis=1))
        largest = float(np.max(np.abs(values[big])))
        raise ValueError(
            f"`{name}` has {int(big.sum())} point(s) with coordinates beyond +-{MAX_COORDINATE:g} "
            f"(up to {largest:.3g}; sample(s) {samples[:10].tolist()}): the model expects "
            "normalised clouds. Pass raw clouds (a list of (n, d) arrays) to predict, or "
            "normalise them with the model's preprocessor."
        )


def _raise_empty(name, nonempty):
    empty = np.flatnonzero(~np.asarray(nonempty, bool))
    if empty.size:
        raise ValueError(
            f"`{name}` has no valid entry for sample(s) {empty[:10].tolist()}: "
            "every sample needs at least one valid point."
        )


def check_points(name, x, expected_dim=None, check_values=True, mask=None):
    """``x`` must be ``(batch, n, d)`` real numbers, ``d == expected_dim`` if given.

    With ``check_values`` (eager tensors only), the coordinates of the valid
    points (``mask`` True, or all if ``mask`` is None) must be finite and within
    ``+-MAX_COORDINATE``.
    """
    check_dtype(name, x)
    shape = _static_shape(x)
    _check_shape(name, shape, expected_dim)
    if not check_values:
        return
    # One reduction: NaN and inf fail the comparison too.
    in_range = ops.abs(ops.cast(x, "float32")) <= MAX_COORDINATE
    if mask is not None:
        in_range = ops.logical_or(in_range, ops.expand_dims(ops.logical_not(mask), -1))
    if _all_true(in_range) is False:
        _raise_bad_values(name, ops.convert_to_numpy(x),
                          None if mask is None else ops.convert_to_numpy(mask))


def check_mask(name, mask, points_name, points, require_nonempty=True, check_values=True):
    """``mask`` must be ``(batch, n)`` matching ``points``; no all-False sample."""
    if mask is None:
        return
    check_dtype(name, mask, allow_bool=True)
    _check_mask_shape(name, _static_shape(mask), points_name, _static_shape(points))
    if not (require_nonempty and check_values):
        return
    nonempty = ops.any(ops.cast(mask, "bool"), axis=1)
    if _all_true(nonempty) is False:
        _raise_empty(name, ops.convert_to_numpy(nonempty))


def check_cloud_arrays(points_name, points, mask_name=None, mask=None, expected_dim=None):
    """The model-boundary checks on host arrays (NumPy or eager tensors), with NumPy.

    For `predict` / `evaluate` / `fit`, which compile the model call, where
    values cannot be inspected: the same checks and messages as
    `check_points` and `check_mask`, before anything is compiled.
    """
    check_dtype(points_name, points)
    points = np.asarray(points)
    _check_shape(points_name, points.shape, expected_dim)
    if mask is not None:
        check_dtype(mask_name, mask, allow_bool=True)
        mask = np.asarray(mask).astype(bool)
        _check_mask_shape(mask_name, mask.shape, points_name, points.shape)
    with np.errstate(invalid="ignore", over="ignore"):  # no float64 copy of a dataset
        in_range = np.abs(points) <= MAX_COORDINATE
        if points.dtype.kind == "f":  # float16 compares with 1e15 as inf
            in_range &= np.isfinite(points)
    if mask is not None:
        in_range |= ~mask[..., None]
    if not in_range.all():
        _raise_bad_values(points_name, points, mask)
    if mask is not None:
        _raise_empty(mask_name, mask.any(axis=1))


def validate_flow_inputs(z0, mask, frozen_mask, context, expected_dim=None):
    """Shape checks for `GradientFlowEquilibrium` inputs (no values: see module doc).

    ``context`` is the map's business and is not inspected.
    """
    del context
    check_points("z0", z0, expected_dim, check_values=False)
    check_mask("mask", mask, "z0", z0, check_values=False)
    check_mask("frozen_mask", frozen_mask, "z0", z0, require_nonempty=False, check_values=False)
