"""How gradients are taken through an equilibrium (kept apart from the solver).

Each adjoint turns a solved equilibrium ``z*`` into the layer's output. The
output's *value* is always ``z*``; the adjoint only decides its gradient. They
all see the map through a pure function::

    image(z, z0, leaves) -> h(z) = where(movable, f(z; leaves), z0)

where ``leaves`` are the flat tensors ``f`` depends on (its context and its
weights), so that gradients can reach them on every backend, and ``movable``
(``(batch, n, 1)`` bool) marks the particles the solver may move (frozen and
padding rows hold ``z0``).
"""

import keras
from keras import ops

from ddeq_keras import backend
from ddeq_keras.solvers.configurable import Configurable


class Adjoint(Configurable):
    """Base class of the adjoints: serialisable, with a readable ``repr``."""

    name = None
    unroll = False


@keras.saving.register_keras_serializable(package="ddeq_keras")
class PhantomAdjoint(Adjoint):
    """Phantom gradient (Jacobian-free backprop): k damped steps from ``z*``.

    With ``z_0 = z*`` (gradient stopped on movable particles; frozen and
    padding rows taken from the differentiable ``z0``, so whatever produced
    ``z0`` is trained too) and
    ``z_{j+1} = (1 - damping) z_j + damping h(z_j)`` on movable rows, the
    output is ``z* + (z_k - stop_gradient(z_k))``: the value is exactly
    ``z*`` and the gradient is that of ``z_k``. With ``steps=1, damping=1``
    (the authors' setting) the gradient is that of ``f(stop_gradient(z*))``.
    Frozen rows are ``z0`` bit for bit.

    Note: a damped step mixes ``z`` with ``f(z)`` *particle by particle*; that
    is meaningful where ``f(z*)`` matches ``z*`` particle by particle, not only
    as a measure.

    Args:
        steps: ``k``, the number of map calls the gradient goes through.
        damping: ``tau`` in ``(0, 1]``.
    """

    name = "phantom"

    def __init__(self, steps=1, damping=1.0):
        if int(steps) != steps or steps < 1:
            raise ValueError(f"`steps` must be an integer >= 1; got steps={steps!r}.")
        if not 0 < damping <= 1:
            raise ValueError(f"`damping` must be in (0, 1]; got damping={damping!r}.")
        self.steps = int(steps)
        self.damping = float(damping)

    def get_config(self):
        return {"steps": self.steps, "damping": self.damping}

    def __call__(self, image, z_star, z0, leaves, movable):
        z_star = ops.stop_gradient(z_star)
        z = ops.where(movable, z_star, z0)
        for _ in range(self.steps):
            fz = image(z, z0, leaves)
            if self.damping != 1.0:
                fz = ops.where(movable, (1.0 - self.damping) * z + self.damping * fz, z0)
            z = fz
        return z_star + (z - ops.stop_gradient(z))


@keras.saving.register_keras_serializable(package="ddeq_keras")
class ImplicitAdjoint(Adjoint):
    """Implicit differentiation of the equilibrium ``z* = h(z*)``.

    The output's value is ``z*``; its gradient solves the adjoint equation
    ``w = g + J_h(z*)^T w`` (``g`` the incoming gradient) per sample by
    fixed-point iteration with vector-Jacobian products (or Anderson-
    accelerated, ``method="anderson"``), then returns ``w^T dh/d(leaves)`` for
    the weights and context, and ``w`` on the frozen rows for ``z0``. Nothing
    from the forward solve is stored.

    Why ``z* = f(z*)`` and not the flow's stationarity ``grad_z F(z*) = 0``:
    with the Riesz kernel, ``F`` contains ``||z_i - f(z)_i||``, which is not
    differentiable exactly where the flow converges (each particle on its
    image), so the Hessian the stationarity condition needs is undefined
    there; and the equilibria are fixed points particle by particle (method
    note, section 9), where ``z* = f(z*)`` holds and only first-order VJPs of
    ``f`` are needed. The iteration converges when ``J_f(z*)`` is
    contractive; ``max_steps`` bounds it otherwise.

    Per sample: each sample stops when its relative change is below ``tol``;
    a sample whose ``||w||`` exceeds ``1e3 ||g||`` (or is not finite) falls
    back to ``w = g``, the one-step phantom gradient, so that one
    non-contractive equilibrium cannot blow up training or hold back the rest
    of the batch. Samples are independent.

    Statistics: every backward pass reports its per-sample iterations and
    fallbacks to `report` (an `AdjointReport`, also from inside compiled
    training steps); the tasks put them into the `fit` logs as
    ``adjoint_steps`` and ``adjoint_fallback``.

    Args:
        max_steps: most iterations of the adjoint solve.
        tol: relative change per sample at which it stops.
        method: ``"fixed_point"`` or ``"anderson"``.
        memory: Anderson's history length (``method="anderson"``).
    """

    name = "implicit"
    METHODS = ("fixed_point", "anderson")

    def __init__(self, max_steps=100, tol=1e-6, method="fixed_point", memory=5):
        if int(max_steps) != max_steps or max_steps < 1:
            raise ValueError(f"`max_steps` must be an integer >= 1; got max_steps={max_steps!r}.")
        if not tol >= 0:
            raise ValueError(f"`tol` must be >= 0; got tol={tol!r}.")
        if method not in self.METHODS:
            raise ValueError(f"`method` must be one of {self.METHODS}; got method={method!r}.")
        if int(memory) != memory or memory < 1:
            raise ValueError(f"`memory` must be an integer >= 1; got memory={memory!r}.")
        self.max_steps = int(max_steps)
        self.tol = float(tol)
        self.method = method
        self.memory = int(memory)
        self.report = AdjointReport()

    def get_config(self):
        return {"max_steps": self.max_steps, "tol": self.tol, "method": self.method,
                "memory": self.memory}

    def solve(self, jt, g):
        """Solves ``w = g + jt(w)`` per sample.

        Args:
            jt: ``w -> J^T w``, batched, samples independent.
            g: ``(batch, ...)`` the incoming gradient.

        Returns:
            ``(w, steps, fallback)``: the solution, ``(batch,)`` int32
            iterations each sample ran, ``(batch,)`` bool samples that fell
            back to ``w = g``.
        """
        from ddeq_keras.solvers.linear import solve_adjoint

        return solve_adjoint(jt, g, max_steps=self.max_steps, tol=self.tol,
                             method=self.method, memory=self.memory)

    def __call__(self, image, z_star, z0, leaves, movable):
        n_leaves = len(leaves)

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

                w, steps, fallback = self.solve(jt, g)
                backend.send_to_host(self.report.add, steps, fallback)
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


class AdjointReport:
    """Per-sample statistics of the backward passes, gathered on the host.

    Attributes:
        last: ``{"steps": (batch,) int, "fallback": (batch,) bool}`` of the most
            recent backward pass, or None.
    """

    def __init__(self):
        self.last = None
        self.reset()

    def reset(self):
        """Starts new running totals (e.g. at each epoch)."""
        self.samples, self.steps, self.fallbacks = 0, 0, 0

    def add(self, steps, fallback):
        self.last = {"steps": steps, "fallback": fallback}
        self.samples += int(steps.size)
        self.steps += int(steps.sum())
        self.fallbacks += int(fallback.sum())

    def means(self):
        """``{"adjoint_steps": mean iterations, "adjoint_fallback": share}`` so far."""
        n = max(self.samples, 1)
        return {"adjoint_steps": self.steps / n, "adjoint_fallback": self.fallbacks / n}


@keras.saving.register_keras_serializable(package="ddeq_keras")
class UnrolledAdjoint(Adjoint):
    """Plain backpropagation through every solver step (tests, small problems).

    Memory grows with the number of steps; the solver runs as a Python loop
    without early exit (finished samples just stop moving).
    """

    name = "unrolled"
    unroll = True

    def __call__(self, image, z_star, z0, leaves, movable):
        return z_star


def _is_float(x):
    return "float" in str(ops.dtype(x))


def _replace(items, positions, values):
    items = list(items)
    for i, v in zip(positions, values):
        items[i] = v
    return items


ADJOINTS = {"phantom": PhantomAdjoint, "implicit": ImplicitAdjoint, "unrolled": UnrolledAdjoint}
