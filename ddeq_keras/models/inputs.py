"""Model inputs: a point cloud as ``{"points", "mask"}`` or a plain tensor.

Every model (DDEQ and baselines) takes a cloud as ``{"points": (batch, n, d),
"mask": (batch, n) bool}`` (the `ddeq_keras.datasets` convention) or as a plain
``(batch, n, d)`` tensor (every point valid), and checks it with
`ddeq_keras.validation` before any work is done.
"""

import keras
import numpy as np
from keras import ops

from ddeq_keras import backend, validation
from ddeq_keras.ops import zero_padded

INPUT_KEYS = ("points", "mask")


def split_cloud(inputs, name="inputs"):
    """Returns ``(points, mask)`` from a cloud dict or a plain tensor.

    Args:
        inputs: ``{"points": ..., "mask": ...}`` (``"mask"`` optional) or a
            ``(batch, n, d)`` tensor.
        name: how the input is named in error messages.

    Returns:
        ``(points, mask)``; ``mask`` is None when every point is valid.
    """
    if isinstance(inputs, dict):
        if "points" not in inputs:
            raise ValueError(
                f"`{name}` must have a 'points' entry; got keys {sorted(inputs)}."
            )
        extra = sorted(set(inputs) - set(INPUT_KEYS))
        if extra:
            raise ValueError(
                f"`{name}` has unexpected keys {extra}; expected {list(INPUT_KEYS)}."
            )
        return inputs["points"], inputs.get("mask")
    if isinstance(inputs, (list, tuple)):
        raise ValueError(
            f"`{name}` must be a dict {{'points', 'mask'}} or a (batch, n, d) "
            f"tensor; got a {type(inputs).__name__}."
        )
    return inputs, None


def points_shape(inputs_shape, point_dim, name="inputs"):
    """The points' shape from a build shape (a dict of shapes or one shape).

    Raises:
        ValueError: the points are not ``(batch, n, point_dim)`` with ``n > 0``.
    """
    if isinstance(inputs_shape, dict):
        if "points" not in inputs_shape:
            raise ValueError(
                f"`{name}` must have a 'points' entry; got keys {sorted(inputs_shape)}."
            )
        shape = inputs_shape["points"]
        label = f"{name}['points']"
    else:
        shape = inputs_shape
        label = name
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(
            f"`{label}` must have rank 3 (batch, num_points, dim); got shape {shape}."
        )
    if shape[-1] is not None and shape[-1] != point_dim:
        raise ValueError(
            f"`{label}` must have {point_dim} coordinates per point (the model's "
            f"`point_dim`); got shape {shape}."
        )
    if shape[1] == 0:
        raise ValueError(f"`{label}` is empty: it has no points (shape {shape}).")
    return shape


def prepare_cloud(inputs, point_dim, name="inputs", check_values=True):
    """Splits, checks and cleans a cloud; returns ``(points, mask or None)``.

    Shape and dtype problems always raise ``ValueError``; with
    ``check_values``, NaN / infinite / out-of-range coordinates of valid
    points and samples whose mask has no valid point raise it on eager calls
    (traced tensors have no values to inspect; `check_batch` covers
    `predict` / `evaluate` / `fit`). Values are checked once per model call, at
    the model's boundary (see `ddeq_keras.validation`).

    The points come back as floats (integer coordinates are cast to
    ``keras.config.floatx()``), with padding rows set to 0: padding may hold
    anything, and NaN there would otherwise leak into sums over the set
    (``0 * NaN`` is NaN). The mask comes back boolean (nonzero is valid).
    """
    points, mask = split_cloud(inputs, name)
    if isinstance(inputs, dict):
        points_name, mask_name = f"{name}['points']", f"{name}['mask']"
    else:
        points_name, mask_name = name, f"{name} mask"
    validation.check_dtype(points_name, points)  # before a string array reaches a backend
    points = ops.convert_to_tensor(points)
    validation.check_points(points_name, points, point_dim, check_values=False)
    if mask is not None:
        validation.check_dtype(mask_name, mask, allow_bool=True)
        mask = ops.convert_to_tensor(mask)
        validation.check_mask(mask_name, mask, points_name, points, check_values=False)
        mask = ops.cast(mask, "bool")
    if check_values:
        validation.check_points(points_name, points, point_dim, mask=mask)
        validation.check_mask(mask_name, mask, points_name, points)
    if not validation.dtype_name(points).startswith(("float", "bfloat")):
        points = ops.cast(points, keras.config.floatx())
    if mask is not None:
        points = zero_padded(points, mask)
    return points, mask


def check_dtypes(inputs, name="inputs"):
    """Inputs for a model's ``__call__``, checked before Keras converts them.

    Keras turns NumPy inputs into float tensors before ``call`` runs, so a
    string array would fail there with NumPy's message, which names no input;
    and it rejects nested lists with a message about positional arguments.
    Nested lists of numbers become arrays here (ragged ones raise).

    Returns:
        ``inputs``, with list-valued entries as NumPy arrays.
    """
    if isinstance(inputs, dict):
        inputs = dict(inputs)
        for key, allow_bool in (("points", False), ("mask", True)):
            if inputs.get(key) is not None:
                label = f"{name}[{key!r}]"
                inputs[key] = _as_array(inputs[key], label)
                validation.check_dtype(label, inputs[key], allow_bool=allow_bool)
    elif isinstance(inputs, np.ndarray) or keras.ops.is_tensor(inputs):
        validation.check_dtype(name, inputs)
    return inputs


def _as_array(x, name):
    """Nested lists as a NumPy array (a ``ValueError`` naming ``name`` if ragged)."""
    if not isinstance(x, (list, tuple)):
        return x
    try:
        return np.asarray(x)
    except ValueError as error:
        raise ValueError(f"`{name}` is not an array of numbers: {error}") from None


def check_batch(x, point_dim, name="inputs"):
    """Checks a batch given to `predict` / `evaluate` / `fit` on the host.

    Those compile the model call, where values cannot be inspected, so NaN /
    infinite / out-of-range coordinates and empty masks would pass silently:
    NumPy (or eager) batches are checked here first, with the messages of
    `prepare_cloud`. Anything else (datasets, generators) is left alone.

    Args:
        x: a ``{"points", "mask"}`` dict or a points array (or anything else).
        point_dim: coordinates per point.
        name: how the input is named in error messages.
    """
    if isinstance(x, dict):
        # Also raises for a dict without "points" or with other keys. On JAX
        # this must happen before Keras's predict starts: it takes the model's
        # variables out while the step runs, and an error raised inside leaves
        # them out (every later call fails with an unrelated TypeError).
        points, mask = split_cloud(x, name)
        points_name, mask_name = f"{name}['points']", f"{name}['mask']"
    elif _is_array(x):
        points, mask, points_name, mask_name = x, None, name, None
    else:
        return
    given_mask = mask is not None
    points = _on_host(points, points_name)
    mask = _on_host(mask, mask_name) if given_mask else None
    if points is None or (given_mask and mask is None):
        return  # not host arrays: the model checks what it can when called
    validation.check_cloud_arrays(points_name, points, mask_name, mask, point_dim)


def _on_host(x, name):
    """``x`` as a NumPy array; None when it is not one (or a concrete tensor)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):  # nested lists of numbers are arrays too
        return _as_array(x, name)
    if keras.ops.is_tensor(x) and backend.is_concrete(x):
        return ops.convert_to_numpy(x)
    return None


def _is_array(x):
    """A NumPy array or a backend tensor (not a dataset, a generator, a list)."""
    return isinstance(x, np.ndarray) or keras.ops.is_tensor(x)
