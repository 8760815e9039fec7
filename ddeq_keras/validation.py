"""Input checks that raise a clear ``ValueError`` before any work is done.

Shape checks always run. Value checks (NaN / infinite coordinates, samples
without a valid point) need concrete values, so they run on eager calls at the
model boundary only (a model's inputs, once per call), and cheaply: one scalar
reduction is copied to the host, the details are computed only when it fails.
Under ``jit`` / ``tf.function`` tensors are symbolic and only shapes are
checked (the data pipeline and the preprocessor validate values before
batching). Layers inside a model (the equilibrium layer) check shapes only.
"""

import numpy as np
from keras import ops

from ddeq_keras import backend


def _static_shape(x):
    # The static shape (None for unknown dims under tf.function), never tensors.
    return tuple(None if d is None else int(d) for d in x.shape)


def _all_true(condition):
    """``bool(all(condition))`` for concrete tensors (one scalar to the host); None if traced."""
    if not backend.is_concrete(condition):
        return None
    return bool(ops.convert_to_numpy(ops.all(condition)))


def check_points(name, x, expected_dim=None, check_values=True):
    """``x`` must be ``(batch, n, d)``, with ``d == expected_dim`` if given, and finite."""
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
    if check_values and _all_true(ops.isfinite(x)) is False:
        values = ops.convert_to_numpy(x)
        bad = ~np.all(np.isfinite(values), axis=-1)
        samples = np.flatnonzero(np.any(bad, axis=1))
        raise ValueError(
            f"`{name}` has {int(bad.sum())} point(s) with NaN or infinite coordinates "
            f"(sample(s) {samples[:10].tolist()})."
        )


def check_mask(name, mask, points_name, points, require_nonempty=True, check_values=True):
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
    if not (require_nonempty and check_values):
        return
    nonempty = ops.any(ops.cast(mask, "bool"), axis=1)
    if _all_true(nonempty) is False:
        empty = np.flatnonzero(~ops.convert_to_numpy(nonempty))
        if empty.size:
            raise ValueError(
                f"`{name}` has no valid entry for sample(s) {empty[:10].tolist()}: "
                "every sample needs at least one valid point."
            )


def validate_flow_inputs(z0, mask, frozen_mask, context, expected_dim=None):
    """Shape checks for `GradientFlowEquilibrium` inputs (no values: see module doc).

    ``context`` is the map's business and is not inspected.
    """
    del context
    check_points("z0", z0, expected_dim, check_values=False)
    check_mask("mask", mask, "z0", z0, check_values=False)
    check_mask("frozen_mask", frozen_mask, "z0", z0, require_nonempty=False, check_values=False)
