"""Anderson acceleration of the particle fixed-point iteration ``z <- f(z)``."""

import keras
from keras import ops

from ddeq_keras.solvers.iterate import iterate
from ddeq_keras.solvers.solution import Solution, result_codes
from ddeq_keras.solvers.stopping import StoppingRule


@keras.saving.register_keras_serializable(package="ddeq_keras")
class AndersonSolver(StoppingRule):
    """Anderson-accelerated fixed-point iteration on the particle positions.

    The flow's equilibria are fixed points particle by particle (``z* = f(z*)``,
    method note section 9), so instead of descending ``F(z) = 1/2 MMD^2(z, f(z))``
    with fixed steps this solver iterates ``z <- f(z)`` and extrapolates from
    the last ``memory`` iterates (Anderson / DIIS, type II): with residuals
    ``r_i = f(z_i) - z_i`` it finds per sample the weights ``a`` (summing to
    one) that minimise ``||sum_i a_i r_i||`` and moves to
    ``sum_i a_i f(z_i)``. Each iteration costs one evaluation of ``f`` and no
    vector-Jacobian product (an Euler step needs both).

    What stays the method's: the stopping rule (``MMD^2(z_k, f(z_k))`` against
    ``tol``, rel or abs, per sample or by batch means, see `StoppingRule`);
    samples are independent (each has its own weights); frozen and padding
    particles never move. A sample that has not met the tolerance when the
    budget runs out returns its best iterate (lowest ``MMD^2``), never a worse
    one than its start. Where the extrapolation is not finite (a singular
    least-squares problem) the step falls back to plain iteration; a sample
    whose map gives NaN/inf stops with result `NON_FINITE`, and one whose
    ``MMD^2`` keeps growing stops with result `DIVERGED` (see `StoppingRule`);
    both return their best finite iterate.

    This is the default solver: it reaches the method's tolerance in a few
    evaluations where the authors' Euler flow (`EulerFlow`) oscillates.

    Args:
        memory: number of past iterates combined (``m``).
        regularization: Tikhonov term of the least-squares problem, relative
            to the mean squared residual (keeps it solvable when residuals are
            nearly collinear).
        max_steps, tol, stopping, check_every, per_sample, divergence_patience,
            divergence_factor: see `StoppingRule`.

    Example:
    >>> from ddeq_keras.solvers import AndersonSolver, FlowProblem
    >>> solver = AndersonSolver(max_steps=200, tol=1e-4)
    >>> z0 = keras.random.normal((2, 8, 2), seed=0)  # 2 samples of 8 particles
    >>> solution = solver.solve(FlowProblem(lambda z: 0.5 * z + 1.0), z0)
    >>> solution.converged.tolist(), solution.result.tolist()  # 0 = CONVERGED
    ([True, True], [0, 0])
    >>> bool(ops.max(ops.abs(solution.value - 2.0)) < 1e-3)  # the fixed point z = 2
    True
    """

    name = "anderson"

    def __init__(self, memory=5, regularization=1e-4, max_steps=200, tol=1e-4,
                 stopping="rel", check_every=1, per_sample=True, divergence_patience=5,
                 divergence_factor=100.0):
        super().__init__(max_steps=max_steps, tol=tol, stopping=stopping,
                         check_every=check_every, per_sample=per_sample,
                         divergence_patience=divergence_patience,
                         divergence_factor=divergence_factor)
        if int(memory) != memory or memory < 1:
            raise ValueError(f"`memory` must be an integer >= 1; got memory={memory!r}.")
        if not regularization > 0:
            raise ValueError(f"`regularization` must be > 0; got {regularization!r}.")
        self.memory = int(memory)
        self.regularization = float(regularization)

    def get_config(self):
        return {"memory": self.memory, "regularization": self.regularization,
                **super().get_config()}

    def solve(self, problem, z0, unroll=False):
        """Run the accelerated iteration from ``z0``; returns a `Solution`."""
        batch = ops.shape(z0)[0]
        m = self.memory
        movable = problem.movable(z0)

        def as_batch(t):  # (batch,) -> (batch, 1, 1)
            return ops.reshape(t, (-1, 1, 1))

        def step(state):
            k, z, done, steps, m0, mk, zs, hs, watch, bad = state
            hz = problem.image(z)
            m_new = problem.mmd(z, hz)
            m0 = ops.where(k == 0, m_new, m0)
            running = ops.logical_not(done)
            finite = self.finite(m_new, hz)
            broken = ops.logical_and(running, ops.logical_not(finite))
            bad = ops.logical_or(bad, broken)
            # Best iterate so far and the divergence test (finite evaluations only).
            watch = self.update_watch(watch, k, ops.logical_and(running, finite), z, m_new, mk)
            failed = ops.logical_or(bad, watch[3])
            done = ops.logical_or(self.update_done(k, done, m_new, m0), failed)
            # History: a ring buffer of (z_i, f(z_i)); at k = 0 every slot holds
            # the first pair, and duplicates just share their weight.
            slot = ops.arange(m) == k % m
            first = k == 0
            write = ops.reshape(ops.logical_or(slot, first), (m, 1, 1, 1))
            zs = ops.where(write, ops.expand_dims(z, 0), zs)
            hs = ops.where(write, ops.expand_dims(hz, 0), hs)
            a = ops.reshape(anderson_weights(hs - zs, self.regularization), (m, -1, 1, 1))
            z_next = ops.sum(a * hs, axis=0)
            z_next = ops.where(as_batch(ops.all(ops.isfinite(z_next), axis=(1, 2))),
                               z_next, hz)
            z_next = ops.where(movable, z_next, z)
            z = ops.where(as_batch(done), z, z_next)
            steps = steps + ops.cast(ops.logical_not(done), "int32")
            return (k + 1, z, done, steps, m0, m_new, zs, hs, watch, bad)

        zeros = ops.zeros((batch,), dtype=z0.dtype)
        history = ops.zeros((m,) + tuple(ops.shape(z0)), dtype=z0.dtype)
        state = (ops.convert_to_tensor(0, dtype="int32"), z0,
                 ops.zeros((batch,), dtype="bool"), ops.zeros((batch,), dtype="int32"),
                 zeros, zeros, history, history, self.start_watch(z0),
                 ops.zeros((batch,), dtype="bool"))
        state = step(state)
        state = iterate(step, state, all_done=lambda s: ops.all(s[2]),
                        num_steps=self.max_steps, check_every=self.check_every,
                        unroll=unroll)
        k, z, done, steps, m0, mk, zs, hs, (best_z, best_m, _, diverged), bad = state
        # ``mk`` is the MMD of the final ``z`` for samples that stopped by the
        # rule; the others (out of budget, non-finite, diverged) return their
        # best iterate.
        failed = ops.logical_or(bad, diverged)
        converged = ops.logical_and(self.met_tolerance(mk, m0), ops.logical_not(failed))
        value = ops.where(as_batch(converged), z, best_z)
        return Solution(
            value=value,
            num_steps=steps,
            num_evaluations=steps + 1,
            mmd_initial=m0,
            mmd_final=ops.where(converged, mk, best_m),
            converged=converged,
            result=result_codes(converged, bad, diverged),
        )


def anderson_weights(residuals, regularization):
    """Per-sample Anderson weights ``(m, batch)`` summing to one.

    They minimise ``||sum_i a_i r_i||^2 + lambda ||a||^2`` per sample subject to
    ``sum_i a_i = 1``, with ``lambda = regularization`` times the mean squared
    residual (so it is scale-free).

    Args:
        residuals: ``(m, batch, ...)``, the last ``m`` residuals of each sample.
        regularization: the relative Tikhonov term.
    """
    m = ops.shape(residuals)[0]
    r = ops.reshape(residuals, (m, ops.shape(residuals)[1], -1))   # (m, b, n*d)
    r = ops.transpose(r, (1, 0, 2))                                 # (b, m, n*d)
    gram = ops.matmul(r, ops.transpose(r, (0, 2, 1)))               # (b, m, m)
    eye = ops.eye(m, dtype=gram.dtype)
    # A sample with NaN/inf residuals (already stopped as non-finite) gets a
    # harmless system: TensorFlow's solve raises on a non-invertible batch entry.
    finite = ops.reshape(ops.all(ops.isfinite(gram), axis=(1, 2)), (-1, 1, 1))
    gram = ops.where(finite, gram, eye)
    scale = ops.mean(ops.diagonal(gram, axis1=1, axis2=2), axis=1)  # (b,)
    reg = ops.reshape(regularization * scale + 1e-30, (-1, 1, 1))
    y = ops.solve(gram + reg * eye, ops.ones((ops.shape(gram)[0], m, 1), gram.dtype))
    y = ops.squeeze(y, -1)
    a = y / ops.sum(y, axis=1, keepdims=True)
    return ops.transpose(a)                                          # (m, b)
