"""Kernels, MMD and distances between (masked) sets of points."""

from keras import ops

from ddeq_keras.ops.masked import count_valid


def safe_norm(x, axis=-1, keepdims=False):
    """Euclidean norm whose gradient at ``x = 0`` is 0 instead of NaN.

    ``sqrt`` has an infinite derivative at 0, which turns into NaN (JAX,
    TensorFlow) on the diagonal of a distance matrix and for duplicate points.
    The double ``where`` keeps both the value and every derivative finite.
    """
    sq = ops.sum(ops.square(x), axis=axis, keepdims=keepdims)
    positive = sq > 0
    safe_sq = ops.where(positive, sq, ops.ones_like(sq))
    return ops.where(positive, ops.sqrt(safe_sq), ops.zeros_like(sq))


def pairwise_differences(a, b):
    """``a[:, i] - b[:, j]`` for every pair: ``(batch, n, m, d)``."""
    return ops.expand_dims(a, 2) - ops.expand_dims(b, 1)


def pairwise_distances(a, b):
    """Euclidean distances ``(batch, n, m)`` with a finite gradient at 0.

    Computed from explicit differences rather than ``|a|^2 + |b|^2 - 2ab``:
    the expansion loses all precision for near-coincident points, and at a
    DDEQ equilibrium every particle sits almost on its image.
    """
    return safe_norm(pairwise_differences(a, b), axis=-1)


def riesz_kernel(a, b, r=1.0):
    """Riesz kernel ``k(a, b) = -||a - b||^r`` (r in (0, 2)), ``(batch, n, m)``.

    With ``r = 1`` the MMD of this kernel is the energy distance.
    """
    d = pairwise_distances(a, b)
    if r == 1 or r == 1.0:
        return -d
    return -ops.power(d, r)


def gaussian_kernel(a, b, bandwidth=1.0):
    """Gaussian kernel ``exp(-||a - b||^2 / (2 bandwidth^2))``, ``(batch, n, m)``."""
    sq = ops.sum(ops.square(pairwise_differences(a, b)), axis=-1)
    return ops.exp(-sq / (2.0 * bandwidth**2))


KERNELS = {"riesz": riesz_kernel, "gaussian": gaussian_kernel}


def _weights(mask, x):
    """Uniform probability weights over the valid points, ``(batch, n)``."""
    if mask is None:
        n = ops.shape(x)[1]
        return ops.ones(ops.shape(x)[:2], dtype=x.dtype) / n
    w = ops.cast(mask, x.dtype)
    n = ops.maximum(count_valid(mask, dtype=x.dtype), ops.ones((), x.dtype))
    return w / ops.expand_dims(n, 1)


def _weighted_kernel_mean(k, wa, wb):
    return ops.sum(k * ops.expand_dims(wa, 2) * ops.expand_dims(wb, 1), axis=(1, 2))


def mmd2(a, b, a_mask=None, b_mask=None, kernel="riesz", **kernel_kwargs):
    """Squared MMD between the uniform measures on two masked point sets.

    The biased V-statistic, diagonal terms included (as in the DDEQ method)::

        MMD^2 = mean_ij k(a_i, a_j) + mean_ij k(b_i, b_j) - 2 mean_ij k(a_i, b_j)

    with means over valid points only.

    Args:
        a: ``(batch, n, d)``.
        b: ``(batch, m, d)``.
        a_mask, b_mask: boolean ``(batch, n)`` / ``(batch, m)`` or None.
        kernel: ``"riesz"`` (``-||a-b||``, the energy distance) or
            ``"gaussian"``, or a callable ``kernel(a, b) -> (batch, n, m)``.
        **kernel_kwargs: passed to the kernel (``r``, ``bandwidth``).

    Returns:
        ``(batch,)`` one value per sample.

    Example:
    >>> from ddeq_keras.ops import mmd2
    >>> x = keras.random.normal((2, 5, 3), seed=0)
    >>> ops.convert_to_numpy(mmd2(x, x)).round(6).tolist()  # a set against itself
    [0.0, 0.0]
    >>> bool(ops.all(mmd2(x, x + 1.0) > 0))  # against a shifted copy
    True
    """
    k = KERNELS[kernel] if isinstance(kernel, str) else kernel
    wa, wb = _weights(a_mask, a), _weights(b_mask, b)
    return (
        _weighted_kernel_mean(k(a, a, **kernel_kwargs), wa, wa)
        + _weighted_kernel_mean(k(b, b, **kernel_kwargs), wb, wb)
        - 2.0 * _weighted_kernel_mean(k(a, b, **kernel_kwargs), wa, wb)
    )


def energy_distance(a, b, a_mask=None, b_mask=None):
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` per sample, ``(batch,)``.

    Equal to the squared MMD of the Riesz kernel with ``r = 1``.
    """
    return mmd2(a, b, a_mask, b_mask, kernel="riesz")


def chamfer_distance(a, b, a_mask=None, b_mask=None, squared=True):
    """Symmetric Chamfer distance per sample, ``(batch,)``.

    ``mean_i min_j d(a_i, b_j) + mean_j min_i d(a_i, b_j)`` over valid points,
    with ``d`` the squared (default) or plain Euclidean distance.
    """
    diff = pairwise_differences(a, b)
    d = ops.sum(ops.square(diff), axis=-1) if squared else safe_norm(diff, axis=-1)
    big = ops.full_like(d, 1e30)
    if b_mask is not None:
        d_ab = ops.where(ops.expand_dims(ops.cast(b_mask, "bool"), 1), d, big)
    else:
        d_ab = d
    if a_mask is not None:
        d_ba = ops.where(ops.expand_dims(ops.cast(a_mask, "bool"), 2), d, big)
    else:
        d_ba = d
    a_to_b = ops.min(d_ab, axis=2)  # (batch, n)
    b_to_a = ops.min(d_ba, axis=1)  # (batch, m)
    return ops.sum(a_to_b * _weights(a_mask, a), axis=1) + ops.sum(
        b_to_a * _weights(b_mask, b), axis=1
    )
