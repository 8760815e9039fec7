"""How gradients are taken through an equilibrium (kept apart from the solver).

Each adjoint turns a solved equilibrium into the layer's differentiable output.
They all see the map through a pure function::

    image(z, z0, leaves) -> h(z) = where(movable, f(z; leaves), z0)

where ``leaves`` are the flat tensors ``f`` depends on (its context and its
weights), so that gradients can reach them on every backend.
"""

from keras import ops

from ddeq_keras import backend


class PhantomAdjoint:
    """Phantom gradient (Jacobian-free backprop): k damped steps from ``z*``.

    The output is ``z_k`` with ``z_0 = stop_gradient(z*)`` and
    ``z_{j+1} = (1 - damping) z_j + damping h(z_j)``; gradients reach the
    weights and the context only through these ``k`` calls of the map. With
    ``steps=1, damping=1`` (the authors' setting) the output is
    ``f(stop_gradient(z*))``.

    Note: a damped step mixes ``z`` with ``f(z)`` *particle by particle*; that
    is meaningful where ``f(z*)`` matches ``z*`` particle by particle, not only
    as a measure.
    """

    name = "phantom"

    def __init__(self, steps=1, damping=1.0):
        if int(steps) != steps or steps < 1:
            raise ValueError(f"`phantom_steps` must be an integer >= 1; got {steps!r}.")
        if not 0 < damping <= 1:
            raise ValueError(f"`phantom_damping` must be in (0, 1]; got {damping!r}.")
        self.steps = int(steps)
        self.damping = float(damping)

    def __call__(self, image, z_star, z0, leaves):
        z = ops.stop_gradient(z_star)
        for _ in range(self.steps):
            fz = image(z, z0, leaves)
            z = fz if self.damping == 1.0 else (1.0 - self.damping) * z + self.damping * fz
        return z


class ImplicitAdjoint:
    """Implicit differentiation of the equilibrium ``z* = h(z*)``.

    The output's value is ``z*``; its gradient solves the adjoint equation
    ``w = g + J_h(z*)^T w`` (``g`` the incoming gradient) by fixed-point
    iteration with vector-Jacobian products, then returns
    ``w^T dh/d(leaves)`` for the weights and context, and ``w`` on the frozen
    rows for ``z0``. Nothing from the forward flow is stored.

    Why ``z* = f(z*)`` and not the flow's stationarity ``grad_z F(z*) = 0``:
    with the Riesz kernel, ``F`` contains ``||z_i - f(z)_i||``, which is not
    differentiable exactly where the flow converges (each particle on its
    image), so the Hessian the stationarity condition needs is undefined
    there; and the equilibria the flow reaches are fixed points particle by
    particle (method note, section 9), where ``z* = f(z*)`` holds and only
    first-order VJPs of ``f`` are needed. The adjoint iteration converges
    when ``J_f(z*)`` is contractive; ``max_steps`` bounds it otherwise.

    Divergence guard: where ``J_f(z*)`` is not contractive the iteration grows
    without bound. A sample whose ``||w||`` exceeds ``1e3 ||g||`` (or is not
    finite) falls back to ``w = g``, the one-step phantom gradient, so that
    training cannot blow up on a non-contractive equilibrium.
    """

    name = "implicit"

    def __init__(self, max_steps=100, tol=1e-6):
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"`implicit_max_steps` must be an integer >= 1; got {max_steps!r}.")
        if not tol >= 0:
            raise ValueError(f"`implicit_tol` must be >= 0; got {tol!r}.")
        self.max_steps = int(max_steps)
        self.tol = float(tol)

    def __call__(self, image, z_star, z0, leaves):
        n_leaves = len(leaves)
        max_steps, tol = self.max_steps, self.tol

        @ops.custom_gradient
        def attach(z_star, z0, *leaves):
            leaves = list(leaves)

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                g = ops.cast(upstream, z_star.dtype)

                def jt(w):  # J_h(z*)^T w; h does not depend on z on frozen rows
                    _, (gz,) = backend.vjp(lambda z: image(z, z0, leaves), [z_star], w)
                    return gz

                def norms(t):  # per sample
                    return ops.sqrt(ops.sum(ops.square(t), axis=tuple(range(1, len(t.shape)))))

                limit = 1e3 * norms(g) + 1e-30

                def body(i, w, delta):
                    w_new = g + jt(w)
                    delta = ops.sqrt(ops.sum(ops.square(w_new - w))) / (
                        ops.sqrt(ops.sum(ops.square(w_new))) + 1e-30
                    )
                    return i + 1, w_new, delta

                def keep_going(i, w, delta):
                    bounded = ops.all(norms(w) <= limit)  # False on NaN too
                    return ops.logical_and(delta > tol, bounded)

                _, w, _ = ops.while_loop(
                    keep_going,
                    body,
                    (ops.convert_to_tensor(0, "int32"), g, ops.convert_to_tensor(1.0, g.dtype)),
                    maximum_iterations=max_steps,
                )
                diverged = ops.logical_not(norms(w) <= limit)
                w = ops.where(ops.reshape(diverged, (-1,) + (1,) * (len(g.shape) - 1)), g, w)
                floats = [i for i, x in enumerate(leaves) if _is_float(x)]
                _, grads = backend.vjp(
                    lambda zz0, *fl: image(z_star, zz0, _replace(leaves, floats, fl)),
                    [z0] + [leaves[i] for i in floats],
                    w,
                )
                leaf_grads = [None] * n_leaves
                for i, gi in zip(floats, grads[1:]):
                    leaf_grads[i] = gi
                return (None, grads[0], *leaf_grads)

            return ops.copy(z_star), grad

        return attach(ops.stop_gradient(z_star), z0, *leaves)


class UnrolledAdjoint:
    """Plain backpropagation through every solver step (tests, small problems).

    Memory grows with the number of steps; the solver runs as a Python loop
    without early exit (finished samples just stop moving).
    """

    name = "unrolled"
    unroll = True

    def __call__(self, image, z_star, z0, leaves):
        return z_star


def _is_float(x):
    return "float" in str(ops.dtype(x))


def _replace(items, positions, values):
    items = list(items)
    for i, v in zip(positions, values):
        items[i] = v
    return items


ADJOINTS = {"phantom": PhantomAdjoint, "implicit": ImplicitAdjoint, "unrolled": UnrolledAdjoint}
