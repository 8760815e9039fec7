"""The adjoint's linear fixed-point problem ``w = g + J^T w``, solved per sample."""

from keras import ops

from ddeq_keras.solvers.anderson import anderson_weights

# A sample whose ||w|| grows past this multiple of ||g|| is taken as diverging
# (J^T not contractive there) and falls back to w = g.
DIVERGENCE_FACTOR = 1e3


def solve_adjoint(jt, g, max_steps, tol, method="fixed_point", memory=5, regularization=1e-4):
    """Solves ``w = g + jt(w)`` for each sample of a batch.

    Each sample iterates until its relative residual ``||t - w|| / ||t||``
    (``t = g + jt(w)``) is at most ``tol``, or its ``||w||`` exceeds
    ``1e3 ||g||`` or turns non-finite (it then falls back to ``w = g``), or the
    budget runs out. Finished samples keep their ``w`` and feed zeros to
    ``jt``, so they neither move nor spread NaN to others.

    Args:
        jt: ``w -> J^T w`` on the whole batch (samples independent).
        g: ``(batch, ...)``.
        max_steps: most iterations.
        tol: relative residual per sample at which it stops.
        method: ``"fixed_point"`` (``w <- g + J^T w``) or ``"anderson"``
            (Anderson-accelerated, ``memory`` past iterates).
        memory: Anderson's history length.
        regularization: Anderson's relative Tikhonov term.

    Returns:
        ``(w, steps, fallback)``; ``steps`` ``(batch,)`` int32, ``fallback``
        ``(batch,)`` bool.
    """
    rank = len(g.shape)
    axes = tuple(range(1, rank))
    batch = ops.shape(g)[0]

    def norms(t):
        return ops.sqrt(ops.sum(ops.square(t), axis=axes))

    def per_sample(b):
        return ops.reshape(b, (-1,) + (1,) * (rank - 1))

    limit = DIVERGENCE_FACTOR * norms(g) + 1e-30
    anderson = method == "anderson"
    m = memory if anderson else 1

    def body(i, w, active, steps, ws, ts):
        w_in = ops.where(per_sample(active), w, ops.zeros_like(w))
        t = g + jt(w_in)
        residual = norms(t - w_in) / (norms(t) + 1e-30)
        if anderson:
            write = ops.reshape(ops.logical_or(ops.arange(m) == i % m, i == 0),
                                (m,) + (1,) * rank)
            ws = ops.where(write, ops.expand_dims(w_in, 0), ws)
            ts = ops.where(write, ops.expand_dims(t, 0), ts)
            a = ops.reshape(anderson_weights(ts - ws, regularization), (m, -1) + (1,) * (rank - 1))
            w_new = ops.sum(a * ts, axis=0)
            w_new = ops.where(per_sample(ops.all(ops.isfinite(w_new), axis=axes)), w_new, t)
        else:
            w_new = t
        # NaN residuals keep "moving": w turns non-finite and falls back below.
        moving = ops.logical_and(active, ops.logical_not(residual <= tol))
        w = ops.where(per_sample(moving), w_new, w)
        steps = steps + ops.cast(moving, "int32")
        bounded = norms(w) <= limit  # False on NaN too
        active = ops.logical_and(moving, bounded)
        return i + 1, w, active, steps, ws, ts

    history = ops.zeros((m,) + tuple(ops.shape(g)), dtype=g.dtype)
    state = (ops.convert_to_tensor(0, "int32"), g, ops.ones((batch,), "bool"),
             ops.zeros((batch,), "int32"), history, history)
    _, w, _, steps, _, _ = ops.while_loop(
        lambda i, w, active, *rest: ops.any(active), body, state, maximum_iterations=max_steps
    )
    fallback = ops.logical_not(norms(w) <= limit)
    w = ops.where(per_sample(fallback), g, w)
    return w, steps, fallback
