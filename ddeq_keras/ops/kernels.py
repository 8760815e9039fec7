"""Kernels, MMD and distances between (masked) sets of points.

Memory. All pairwise quantities are ``(batch, n, m)`` matrices. Two ways to
fill them (``method``):

- ``"explicit"``: from the differences ``a_i - b_j``, a ``(batch, n, m, d)``
  tensor: 4 GiB for 64 sets of 351 particles of width 128, and its gradient
  needs more.
- ``"gram"``: from inner products (batched matrix products), never more than
  ``(batch, n, m)``. The textbook ``||a_i||^2 + ||b_j||^2 - 2 a_i.b_j``
  cancels catastrophically for near-coincident points (an absolute error of
  about ``eps * (||a_i||^2 + ||b_j||^2)`` on the squared distance: two copies
  of a point at norm 3 come out ~1e-3 apart in float32), and at a DDEQ
  equilibrium particles sit on their images and crowd together. So the sets
  are centred at their common mean (distances are translation invariant),
  each point is split into a part on a coarse grid, on which the expansion is
  exact, and a small remainder (`_split_gram`), the ``(i, i)`` entries of
  equally long sets come from ``a_i - b_i`` directly (a set against itself,
  ``z`` against its image ``f(z)``), and Chamfer recomputes each chosen
  nearest pair from its difference.
- ``"auto"`` (default): explicit while the per-sample difference tensor has
  at most `EXPLICIT_MAX_ELEMENTS` elements (4 MiB of float32), Gram beyond.
  The decision uses static shapes only, never the batch size, so a sample
  alone and in a batch take the same path.

Measured against float64 on the particles of untrained models' Anderson
solves (MNIST classifier, 10 particles; completer, 351 particles of which
the generated ones collapse together): the textbook expansion is off by up
to 6e-4 (classifier) and 1e-4 (completer) of the initial MMD^2, goes
negative and stops the solver early; the split Gram form is as close as
explicit differences (~1e-6 of the initial MMD^2: float32 summation), and
the solver takes the same steps to within one. It costs about three plain
Gram forms (still far less than explicit differences).
"""

import math

from keras import ops

from ddeq_keras.ops.masked import count_valid

# Per sample: sets whose (n, m, d) difference tensor is at most this large use
# explicit differences under method="auto" (4 MiB of float32 per sample, so
# 256 MiB at batch 64). The MNIST and ModelNet classifiers' 10 particles of
# width 128 (12,800) and 2-D clouds of up to 724 points stay exact; the
# completer's 351 particles of width 128 (15.8 M) take the Gram form.
EXPLICIT_MAX_ELEMENTS = 2**20
METHODS = ("auto", "explicit", "gram")
_FAR = 1e30  # a squared distance that no valid pair reaches


def safe_norm(x, axis=-1, keepdims=False):
    """Euclidean norm whose gradient at ``x = 0`` is 0 instead of NaN.

    ``sqrt`` has an infinite derivative at 0, which turns into NaN (JAX,
    TensorFlow) on the diagonal of a distance matrix and for duplicate points.
    The double ``where`` keeps both the value and every derivative finite.
    """
    return _safe_sqrt(ops.sum(ops.square(x), axis=axis, keepdims=keepdims))


def _safe_sqrt(sq):
    """``sqrt(sq)`` for ``sq > 0``, else 0, with a finite gradient everywhere."""
    return _safe_power(sq, 0.5)


def _safe_power(sq, exponent):
    """``sq ** exponent`` for ``sq > 0``, else 0; the double ``where`` keeps the
    gradient finite (0) at and below 0, where ``power`` has an infinite one."""
    positive = sq > 0
    safe_sq = ops.where(positive, sq, ops.ones_like(sq))
    value = ops.sqrt(safe_sq) if exponent == 0.5 else ops.power(safe_sq, exponent)
    return ops.where(positive, value, ops.zeros_like(sq))


def _resolve_method(method, a, b):
    """``"explicit"`` or ``"gram"`` for sets ``a`` ``(batch, n, d)`` and ``b``."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    if method != "auto":
        return method
    n, m, d = a.shape[1], b.shape[1], a.shape[-1]
    if None in (n, m, d):  # unknown at trace time: the path whose memory is bounded
        return "gram"
    return "explicit" if max(n, m) ** 2 * d <= EXPLICIT_MAX_ELEMENTS else "gram"


def _split_gram(a, b):
    """``||a_i - b_j||^2`` from Gram matrices, without the cancellation error.

    Each point is split into a part on a coarse grid and a remainder,
    ``a = a_grid + a_rest`` (the grid step a power of two, at most ``Q``
    steps per coordinate with ``4 d Q^2 <= 2^24``). On the grid every product,
    every sum of ``d`` products and the final ``||.||^2 + ||.||^2 - 2 <.,.>``
    are integers times the step squared below ``2^24``: exact in float32,
    whatever the summation order. What is left is rounded relative to
    ``||a|| ||a_rest||``, about 1/500 of the plain Gram form's error, so
    near-coincident points come out as close as explicit differences put
    them. The grid parts are constants: the gradient, ``2 (a_i - b_j)``, flows
    through the remainders. Two matrix products (inner dimensions ``d`` and
    ``2 d``) instead of one.
    """
    dtype = a.dtype
    if _is_half(dtype):  # the grid needs float32's 24-bit significand
        a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
    dim = a.shape[-1]
    levels = float(math.floor(math.sqrt(2.0**22 / dim))) - 1.0
    top = ops.maximum(ops.max(ops.abs(a), axis=(1, 2), keepdims=True),
                      ops.max(ops.abs(b), axis=(1, 2), keepdims=True))
    top = ops.maximum(top, ops.full_like(top, 1e-30))
    step = ops.stop_gradient(ops.power(2.0, ops.ceil(ops.log2(top / levels))))
    a_grid = ops.stop_gradient(ops.round(a / step) * step)
    b_grid = ops.stop_gradient(ops.round(b / step) * step)
    a_rest, b_rest = a - a_grid, b - b_grid

    def cross(x, y):  # (batch, n, m) inner products
        return ops.matmul(x, ops.transpose(y, (0, 2, 1)))

    def outer_sum(u, v):  # u_i + v_j
        return ops.expand_dims(u, 2) + ops.expand_dims(v, 1)

    # Exact: ||a_grid||^2 + ||b_grid||^2 - 2 <a_grid, b_grid>.
    on_grid = outer_sum(ops.sum(a_grid * a_grid, axis=-1), ops.sum(b_grid * b_grid, axis=-1))
    on_grid = on_grid - 2.0 * cross(a_grid, b_grid)
    # The rest, every term small: 2 <a_grid, a_rest> + ||a_rest||^2 (and the
    # same for b) - 2 (<a_grid, b_rest> + <a_rest, b>), the last two in one
    # product.
    small_a = ops.sum(a_rest * (2.0 * a_grid + a_rest), axis=-1)
    small_b = ops.sum(b_rest * (2.0 * b_grid + b_rest), axis=-1)
    small = outer_sum(small_a, small_b) - 2.0 * cross(
        ops.concatenate([a_grid, a_rest], axis=-1), ops.concatenate([b_rest, b], axis=-1))
    return ops.cast(on_grid + small, dtype)


def _is_half(dtype):
    name = str(dtype)
    return "float16" in name  # float16 and bfloat16


def pairwise_squared_distances(a, b, method="auto"):
    """Squared Euclidean distances ``||a_i - b_j||^2``, ``(batch, n, m)``.

    Args:
        a: ``(batch, n, d)``.
        b: ``(batch, m, d)``.
        method: ``"auto"``, ``"explicit"`` or ``"gram"`` (see the module
            docstring). The Gram form centres both sets at their common mean
            (padded rows included: centre masked sets first, as `mmd2` does)
            and computes the ``(i, i)`` entries exactly when ``n == m``.

    Returns:
        ``(batch, n, m)``, never negative.

    Example:
    >>> from ddeq_keras.ops.kernels import pairwise_squared_distances
    >>> a = ops.array([[[0.0, 0.0], [3.0, 4.0]]])
    >>> ops.convert_to_numpy(pairwise_squared_distances(a, a, "gram"))[0].tolist()
    [[0.0, 25.0], [25.0, 0.0]]
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    if _resolve_method(method, a, b) == "explicit":
        return ops.sum(ops.square(ops.expand_dims(a, 2) - ops.expand_dims(b, 1)), axis=-1)
    centre = ops.stop_gradient(ops.mean(ops.concatenate([a, b], axis=1), axis=1, keepdims=True))
    a, b = a - centre, b - centre
    sq = _split_gram(a, b)
    n = a.shape[1]
    if n is not None and n == b.shape[1]:
        aligned = ops.sum(ops.square(a - b), axis=-1)  # exact, (batch, n)
        sq = ops.where(ops.eye(n) > 0, ops.expand_dims(aligned, 2), sq)
    # Rounding can make a tiny squared distance negative.
    return ops.where(sq > 0, sq, ops.zeros_like(sq))


def pairwise_distances(a, b, method="auto"):
    """Euclidean distances ``(batch, n, m)`` with a finite gradient at 0.

    See `pairwise_squared_distances` for ``method``.
    """
    return _safe_sqrt(pairwise_squared_distances(a, b, method))


def riesz_kernel(a, b, r=1.0, method="auto"):
    """Riesz kernel ``k(a, b) = -||a - b||^r`` (r in (0, 2)), ``(batch, n, m)``.

    With ``r = 1`` the MMD of this kernel is the energy distance. The gradient
    at zero distance is 0 for every ``r``. See `pairwise_squared_distances`
    for ``method``.
    """
    return -_safe_power(pairwise_squared_distances(a, b, method), 0.5 * float(r))


def gaussian_kernel(a, b, bandwidth=1.0, method="auto"):
    """Gaussian kernel ``exp(-||a - b||^2 / (2 bandwidth^2))``, ``(batch, n, m)``."""
    sq = pairwise_squared_distances(a, b, method)
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


def _centred(a, b, a_mask, b_mask):
    """Both sets minus the mean of their valid points together (a constant:
    no gradient flows through it), padded rows set to 0 (the new centre)."""
    ones = lambda x: ops.ones(ops.shape(x)[:2], x.dtype)  # noqa: E731
    wa = ones(a) if a_mask is None else ops.cast(a_mask, a.dtype)
    wb = ones(b) if b_mask is None else ops.cast(b_mask, b.dtype)
    wa, wb = ops.expand_dims(wa, -1), ops.expand_dims(wb, -1)
    total = ops.sum(ops.where(wa > 0, a, 0.0), axis=1, keepdims=True) + ops.sum(
        ops.where(wb > 0, b, 0.0), axis=1, keepdims=True
    )
    count = ops.sum(wa, axis=1, keepdims=True) + ops.sum(wb, axis=1, keepdims=True)
    centre = ops.stop_gradient(total / ops.maximum(count, ops.ones_like(count)))
    return ops.where(wa > 0, a - centre, 0.0), ops.where(wb > 0, b - centre, 0.0)


def _weighted_kernel_mean(k, wa, wb):
    return ops.sum(k * ops.expand_dims(wa, 2) * ops.expand_dims(wb, 1), axis=(1, 2))


def mmd2(a, b, a_mask=None, b_mask=None, kernel="riesz", method="auto", **kernel_kwargs):
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
        method: how the built-in kernels compute distances (see the module
            docstring); with ``"gram"`` both sets are first centred at the
            mean of their valid points. Ignored for a callable ``kernel``.
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
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    wa, wb = _weights(a_mask, a), _weights(b_mask, b)
    if isinstance(kernel, str):
        k = KERNELS[kernel]
        method = _resolve_method(method, a, b)
        if method == "gram":  # the built-in kernels are translation invariant
            a, b = _centred(a, b, a_mask, b_mask)
        kernel_kwargs = dict(kernel_kwargs, method=method)
    else:
        k = kernel
    return (
        _weighted_kernel_mean(k(a, a, **kernel_kwargs), wa, wa)
        + _weighted_kernel_mean(k(b, b, **kernel_kwargs), wb, wb)
        - 2.0 * _weighted_kernel_mean(k(a, b, **kernel_kwargs), wa, wb)
    )


def energy_distance(a, b, a_mask=None, b_mask=None, method="auto"):
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` per sample, ``(batch,)``.

    Equal to the squared MMD of the Riesz kernel with ``r = 1``.
    """
    return mmd2(a, b, a_mask, b_mask, kernel="riesz", method=method)


def _nearest(sq, source, target, target_mask, axis, squared):
    """Exact (squared) distance from every point of ``source`` to its nearest
    valid point of ``target``, the neighbour chosen on ``sq`` (Gram form).

    ``axis``: the axis of ``sq`` ``(batch, n, m)`` that indexes ``target``.
    Returns ``(batch, len(source))``, `_FAR` where ``target`` has no valid point.
    """
    if target_mask is not None:
        valid = ops.expand_dims(ops.cast(target_mask, "bool"), 3 - axis)
        sq = ops.where(valid, sq, ops.full_like(sq, _FAR))
    index = ops.argmin(sq, axis=axis)  # (batch, len(source))
    index = ops.broadcast_to(ops.expand_dims(index, -1), ops.shape(source))
    neighbour = ops.take_along_axis(target, index, axis=1)
    exact = ops.sum(ops.square(source - neighbour), axis=-1)
    exact = exact if squared else _safe_sqrt(exact)
    if target_mask is None:
        return exact
    return ops.where(ops.min(sq, axis=axis) < _FAR, exact, ops.full_like(exact, _FAR))


def chamfer_distance(a, b, a_mask=None, b_mask=None, squared=True, method="auto"):
    """Symmetric Chamfer distance per sample, ``(batch,)``.

    ``mean_i min_j d(a_i, b_j) + mean_j min_i d(a_i, b_j)`` over valid points,
    with ``d`` the squared (default) or plain Euclidean distance. With the
    Gram form (see the module docstring) the nearest neighbours are found on
    the Gram matrix and their distances recomputed exactly.
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    if _resolve_method(method, a, b) == "explicit":
        d = pairwise_squared_distances(a, b, "explicit")
        d = d if squared else _safe_sqrt(d)
        big = ops.full_like(d, _FAR)
        d_ab = d if b_mask is None else ops.where(
            ops.expand_dims(ops.cast(b_mask, "bool"), 1), d, big)
        d_ba = d if a_mask is None else ops.where(
            ops.expand_dims(ops.cast(a_mask, "bool"), 2), d, big)
        a_to_b = ops.min(d_ab, axis=2)  # (batch, n)
        b_to_a = ops.min(d_ba, axis=1)  # (batch, m)
    else:
        a, b = _centred(a, b, a_mask, b_mask)
        sq = pairwise_squared_distances(a, b, "gram")
        a_to_b = _nearest(sq, a, b, b_mask, axis=2, squared=squared)
        b_to_a = _nearest(sq, b, a, a_mask, axis=1, squared=squared)
    return ops.sum(a_to_b * _weights(a_mask, a), axis=1) + ops.sum(
        b_to_a * _weights(b_mask, b), axis=1
    )
