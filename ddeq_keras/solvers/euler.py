"""Explicit Euler discretisation of the Wasserstein gradient flow (the authors' solver)."""

from keras import ops

from ddeq_keras.solvers.iterate import iterate
from ddeq_keras.solvers.solution import Solution

STOPPING_RULES = ("rel", "abs")


class EulerFlow:
    """Explicit Euler steps ``z <- z + eta * v(z)`` on the particle positions.

    ``v`` is the Wasserstein velocity of ``F(z) = 1/2 MMD^2(z, f(z))`` (see
    `FlowProblem`). Iteration ``k`` evaluates ``MMD^2(z_k, f(z_k))`` and its
    gradient, checks the stopping rule when ``k`` is a multiple of
    ``check_every`` (and at ``k = max_steps``), then moves the samples that
    are not done. So at most ``max_steps`` updates and ``max_steps + 1``
    evaluations happen.

    Stopping rules, with ``m_k = MMD^2(z_k, f(z_k))`` per sample:
    - ``"rel"``: ``m_k <= tol * m_0``;
    - ``"abs"``: ``m_k <= tol``.

    By default each sample stops on its own (``per_sample=True``), so its
    result never depends on the rest of the batch. ``per_sample=False`` is the
    authors' rule: the whole batch stops when the *batch means* meet it.

    Args:
        eta: step size (the authors: 5, then 1 later in training).
        max_steps: most updates (the authors: 200, then 1000).
        tol: tolerance of the stopping rule (the authors: 1e-4).
        stopping: ``"rel"`` or ``"abs"``.
        check_every: iterations between checks (the authors: 100).
        per_sample: stop samples independently (default) or by batch means.

    Example:
    >>> solver = EulerFlow(eta=5.0, max_steps=200, tol=1e-4)
    >>> solution = solver.solve(FlowProblem(f), z0)
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
    ):
        validate_solver_args(eta=eta, max_steps=max_steps, tol=tol,
                             stopping=stopping, check_every=check_every)
        self.eta = float(eta)
        self.max_steps = int(max_steps)
        self.tol = float(tol)
        self.stopping = stopping
        self.check_every = int(check_every)
        self.per_sample = bool(per_sample)

    def get_config(self):
        return {
            "eta": self.eta,
            "max_steps": self.max_steps,
            "tol": self.tol,
            "stopping": self.stopping,
            "check_every": self.check_every,
            "per_sample": self.per_sample,
        }

    def met_tolerance(self, m, m0):
        """Boolean ``(batch,)``: which samples meet the stopping rule."""
        if self.per_sample:
            ref = m0 if self.stopping == "rel" else ops.ones_like(m0)
            return m <= self.tol * ref
        mean_m = ops.mean(m)
        ref = ops.mean(m0) if self.stopping == "rel" else ops.ones_like(mean_m)
        met = mean_m <= self.tol * ref
        return ops.broadcast_to(met, ops.shape(m))

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
            k, z, done, steps, m0, m = state
            m_new, v = problem.mmd_and_velocity(z, higher_order=unroll)
            m0 = ops.where(k == 0, m_new, m0)
            is_check = ops.logical_or(k % check_every == 0, k >= max_steps)
            met = ops.logical_and(is_check, self.met_tolerance(m_new, m0))
            done = ops.logical_or(ops.logical_or(done, met), k >= max_steps)
            z = ops.where(ops.reshape(done, (-1, 1, 1)), z, z + self.eta * v)
            steps = steps + ops.cast(ops.logical_not(done), "int32")
            return (k + 1, z, done, steps, m0, m_new)

        zeros = ops.zeros((batch,), dtype=z0.dtype)
        state = (
            ops.convert_to_tensor(0, dtype="int32"),
            z0,
            ops.zeros((batch,), dtype="bool"),
            ops.zeros((batch,), dtype="int32"),
            zeros,
            zeros,
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
        k, z, done, steps, m0, m = state
        return Solution(
            value=z,
            num_steps=steps,
            num_evaluations=k,
            mmd_initial=m0,
            mmd_final=m,
            converged=self.met_tolerance(m, m0),
        )


def validate_solver_args(eta, max_steps, tol, stopping, check_every):
    """Raise ``ValueError`` naming the first bad solver argument."""
    if not eta > 0:
        raise ValueError(f"`eta` must be a positive step size; got eta={eta!r}.")
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"`max_steps` must be an integer >= 1; got max_steps={max_steps!r}.")
    if not tol >= 0:
        raise ValueError(f"`tol` must be >= 0; got tol={tol!r}.")
    if stopping not in STOPPING_RULES:
        raise ValueError(
            f"`stopping` must be one of {STOPPING_RULES}; got stopping={stopping!r}."
        )
    if int(check_every) != check_every or check_every < 1:
        raise ValueError(
            f"`check_every` must be an integer >= 1; got check_every={check_every!r}."
        )
