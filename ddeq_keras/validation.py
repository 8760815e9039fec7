"""Input checks that raise a clear ``ValueError`` before any work is done.

Shape checks always run. Value checks (NaN / infinite coordinates, samples
without a valid particle) need concrete values, so they run on eager calls;
under ``jit`` / ``tf.function`` tensors are symbolic and only shapes are
checked (the data pipeline validates values before batching).
"""

import numpy as np
from keras import ops

from ddeq_keras import backend


def _static_shape(x):
    # The static shape (None for unknown dims under tf.function), never tensors.
    return tuple(None if d is None else int(d) for d in x.shape)


def _values(x):
    if not backend.is_concrete(x):
        return None
    return ops.convert_to_numpy(x)


def check_points(name, x, expected_dim=None):
    """``x`` must be ``(batch, n, d)``, with ``d == expected_dim`` if given."""
    shape = _static_shape(x)
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
    values = _values(x)
    if values is not None and not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.all(np.isfinite(values), axis=-1)))
        raise ValueError(f"`{name}` has {bad} point(s) with NaN or infinite coordinates.")


def check_mask(name, mask, points_name, points, require_nonempty=True):
    """``mask`` must be ``(batch, n)`` matching ``points``; no all-False sample."""
    if mask is None:
        return
    shape, pshape = _static_shape(mask), _static_shape(points)
    if len(shape) != 2 or any(
        a is not None and b is not None and a != b for a, b in zip(shape, pshape[:2])
    ):
        raise ValueError(
            f"`{name}` must have shape (batch, num_points) = {pshape[:2]} to match "
            f"`{points_name}`; got {shape}."
        )
    values = _values(mask)
    if require_nonempty and values is not None:
        empty = np.flatnonzero(~np.any(values.astype(bool), axis=1))
        if empty.size:
            raise ValueError(
                f"`{name}` has no valid entry for sample(s) {empty[:10].tolist()}: "
                "every sample needs at least one valid point."
            )


def validate_flow_inputs(z0, mask, frozen_mask, context, expected_dim=None):
    """Checks for `GradientFlowEquilibrium` inputs."""
    check_points("z0", z0, expected_dim)
    check_mask("mask", mask, "z0", z0)
    check_mask("frozen_mask", frozen_mask, "z0", z0, require_nonempty=False)
    if context is not None:
        import keras

        for i, leaf in enumerate(keras.tree.flatten(context)):
            if leaf is not None and "float" in str(ops.dtype(leaf)):
                values = _values(leaf)
                if values is not None and not np.all(np.isfinite(values)):
                    raise ValueError(
                        f"`context` (leaf {i}, shape {_static_shape(leaf)}) contains NaN "
                        "or infinite values."
                    )
