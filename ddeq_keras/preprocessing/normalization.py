"""Cloud normalisation, written once for every array namespace that runs it.

The same function serves the model side (`keras.ops`, any backend, padded and
masked batches) and the `tf.data` pipeline (`tf.experimental.numpy`, one
unpadded cloud), so a model is always fed clouds normalised exactly as in its
training.
"""

NORMALIZATIONS = ("std", "sphere", None)


def check_normalization(method):
    """Raises ``ValueError`` unless ``method`` is one of `NORMALIZATIONS`."""
    if method not in NORMALIZATIONS:
        raise ValueError(f"`normalize` must be one of {NORMALIZATIONS}; got {method!r}.")


def normalize_points(points, weights, method, xp):
    """Centres and scales each cloud over its valid points.

    Args:
        points: ``(..., n, d)`` coordinates.
        weights: ``(..., n, 1)`` floats, 1 for valid points and 0 for padding.
        method: ``"std"`` (the DDEQ authors': centre by the mean, divide each
            axis by its population std; an axis with (relative) std below
            1e-8, e.g. a "1" drawn in one column, is left unscaled), ``"sphere"``
            (centre, then scale into the unit ball) or None (unchanged).
        xp: the array namespace: `keras.ops` or `tf.experimental.numpy`.

    Returns:
        The normalised points; padding rows are 0. For ``"std"`` and
        ``"sphere"`` the result does not depend on the cloud's scale: any
        finite float32 cloud, 1e-30 or 1e30 across, gives the same points.
    """
    check_normalization(method)
    if method is None:
        return points
    valid = weights > 0
    zeros = xp.zeros_like(points)
    # Work in units of the cloud's largest |coordinate|: in float32, sums of
    # squares overflow past ~1e18 and underflow below ~1e-19 (a cloud would
    # collapse to 0), and the result is scale-free anyway. Padding may hold
    # anything (NaN included): it is masked out before any arithmetic.
    magnitude = xp.where(valid, xp.abs(points), zeros)
    scale = xp.max(xp.max(magnitude, axis=-1, keepdims=True), axis=-2, keepdims=True)
    scale = xp.where(scale > 0, scale, xp.ones_like(scale))
    count = xp.maximum(xp.sum(weights, axis=-2, keepdims=True), 1.0)
    centred = xp.where(valid, points / scale, zeros)
    # Centre twice: the first mean's rounding leaves a constant axis at a tiny
    # constant offset (~1e-8), which "std" would blow up to +-1.
    for _ in range(2):
        centred = (centred - xp.sum(centred * weights, axis=-2, keepdims=True) / count) * weights
    if method == "std":
        std = xp.sqrt(xp.sum(xp.square(centred), axis=-2, keepdims=True) / count)
        return centred / xp.where(std > 1e-8, std, xp.ones_like(std))
    norms = xp.sqrt(xp.sum(xp.square(centred), axis=-1, keepdims=True))
    radius = xp.max(norms, axis=-2, keepdims=True)
    return centred / xp.where(radius > 1e-8, radius, xp.ones_like(radius))
