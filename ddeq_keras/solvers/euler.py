"""Explicit Euler discretisation of the Wasserstein gradient flow (the authors' solver)."""

import keras
from keras import ops

from ddeq_keras.solvers.iterate import iterate
from ddeq_keras.solvers.solution import Solution, result_codes
from ddeq_keras.solvers.stopping import StoppingRule, validate_solver_args


@keras.saving.register_keras_serializable(package="ddeq_keras")
class EulerFlow(StoppingRule):
    """Explicit Euler steps ``z <- z + eta * v(z)`` on the particle positions.

    ``v`` is the Wasserstein velocity of ``F(z) = 1/2 MMD^2(z, f(z))`` (see
    `FlowProblem`). Iteration ``k`` evaluates ``MMD^2(z_k, f(z_k))`` and its
    gradient, checks the stopping rule when ``k`` is a multiple of
    ``check_every`` (and at ``k = max_steps``), then moves the samples that
    are not done. So at most ``max_steps`` updates and ``max_steps + 1``
    evaluations happen. A sample that ends its budget returns its last
    iterate (the authors' flow). A sample whose ``MMD^2`` or velocity is not
    finite stops with result `NON_FINITE`, and one whose ``MMD^2`` keeps
    growing (a step size too large for the map) stops with result
    `DIVERGED`; both return their best (lowest ``MMD^2``) finite iterate.

    This is the authors' solver (eta 5, 200 steps). With the Riesz kernel it
    ends in an ``O(eta)`` oscillation around the equilibrium and rarely meets
    the tolerance; `AndersonSolver` (the default) reaches the same equilibria.

    The stopping rule and the step budget are `StoppingRule`'s.

    Args:
        eta: step size (the authors: 5, then 1 later in training).
        max_steps: most updates (the authors: 200, then 1000).
        tol: tolerance of the stopping rule (the authors: 1e-4).
        stopping: ``"rel"`` or ``"abs"``.
        check_every: iterations between checks (the authors: 100).
        per_sample: stop samples independently (default) or by batch means.
        divergence_patience, divergence_factor: when a sample counts as
            diverged, see `StoppingRule`.

    Example:
    >>> from ddeq_keras.solvers import EulerFlow, FlowProblem
    >>> solver = EulerFlow(eta=1.0, max_steps=20, tol=1e-4)
    >>> z0 = keras.random.normal((2, 8, 2), seed=0)  # 2 samples of 8 particles
    >>> solution = solver.solve(FlowProblem(lambda z: 0.5 * z + 1.0), z0)
    >>> solution.num_evaluations.tolist()  # budget used: max_steps + 1 evaluations
    [21, 21]
    >>> bool(ops.all(solution.mmd_final < solution.mmd_initial))
    True
    """

    name = "euler"

    def __init__(
        self,
        eta=5.0,
        max_steps=200,
        tol=1e-4,
        stopping="rel",
        check_every=1,
        per_sample=True,
        divergence_patience=5,
        divergence_factor=100.0,
    ):
        validate_solver_args(max_steps=max_steps, tol=tol, stopping=stopping,
                             check_every=check_every, eta=eta)
        super().__init__(max_steps=max_steps, tol=tol, stopping=stopping,
                         check_every=check_every, per_sample=per_sample,
                         divergence_patience=divergence_patience,
                         divergence_factor=divergence_factor)
        self.eta = float(eta)

    def get_config(self):
        return {"eta": self.eta, **super().get_config()}

    def solve(self, problem, z0, unroll=False):
        """Run the flow from ``z0``.

        Args:
            problem: a `FlowProblem`.
            z0: initial particles ``(batch, n, d)``.
            unroll: keep every step differentiable (Python loop, no early
                exit): for ``backward="unrolled"``.

        Returns:
            A `Solution`.
        """
        batch = ops.shape(z0)[0]
        max_steps, check_every = self.max_steps, self.check_every

        def step(state):
            k, z, done, steps, m0, m, bad, watch = state
            m_new, v = problem.mmd_and_velocity(z, higher_order=unroll)
            m0 = ops.where(k == 0, m_new, m0)
            running = ops.logical_not(done)
            finite = self.finite(m_new, v)
            broken = ops.logical_and(running, ops.logical_not(finite))
            bad = ops.logical_or(bad, broken)
            watch = self.update_watch(watch, k, ops.logical_and(running, finite), z, m_new, m)
            m_new = ops.where(broken, m, m_new)  # keep the last finite MMD
            failed = ops.logical_or(bad, watch[3])
            done = ops.logical_or(self.update_done(k, done, m_new, m0), failed)
            z = ops.where(ops.reshape(done, (-1, 1, 1)), z, z + self.eta * v)
            steps = steps + ops.cast(ops.logical_not(done), "int32")
            return (k + 1, z, done, steps, m0, m_new, bad, watch)

        zeros = ops.zeros((batch,), dtype=z0.dtype)
        state = (
            ops.convert_to_tensor(0, dtype="int32"),
            z0,
            ops.zeros((batch,), dtype="bool"),
            ops.zeros((batch,), dtype="int32"),
            zeros,
            zeros,
            ops.zeros((batch,), dtype="bool"),
            self.start_watch(z0),
        )
        # Iteration 0 always runs (it defines m_0); then up to max_steps more.
        state = step(state)
        state = iterate(
            step,
            state,
            all_done=lambda s: ops.all(s[2]),
            num_steps=max_steps,
            check_every=check_every,
            unroll=unroll,
        )
        k, z, done, steps, m0, m, bad, (best_z, best_m, _, diverged) = state
        failed = ops.logical_or(bad, diverged)
        converged = ops.logical_and(self.met_tolerance(m, m0), ops.logical_not(failed))
        return Solution(
            value=ops.where(ops.reshape(failed, (-1, 1, 1)), best_z, z),
            num_steps=steps,
            num_evaluations=steps + 1,
            mmd_initial=m0,
            mmd_final=ops.where(failed, best_m, m),
            converged=converged,
            result=result_codes(converged, bad, diverged),
        )
