"""What every equilibrium solver shares: its budget and its stopping rule."""

from keras import ops

from ddeq_keras.solvers.configurable import Configurable

STOPPING_RULES = ("rel", "abs")


class StoppingRule(Configurable):
    """The method's stopping rule and step budget, shared by all solvers.

    With ``m_k = MMD^2(z_k, f(z_k))`` per sample, a sample is done when
    - ``"rel"``: ``m_k <= tol * m_0``, or
    - ``"abs"``: ``m_k <= tol``,
    tested every ``check_every`` iterations (and at ``max_steps``), or when it
    has used ``max_steps`` updates. ``per_sample=True`` (default) lets each
    sample stop on its own, so its result never depends on the rest of the
    batch; ``per_sample=False`` is the authors' rule (the whole batch stops when
    the *batch means* meet it).

    Args:
        max_steps: most updates.
        tol: tolerance of the stopping rule (the authors: 1e-4).
        stopping: ``"rel"`` or ``"abs"``.
        check_every: iterations between checks (the authors: 100).
        per_sample: stop samples independently (default) or by batch means.
    """

    def __init__(self, max_steps=200, tol=1e-4, stopping="rel", check_every=1, per_sample=True):
        validate_solver_args(max_steps=max_steps, tol=tol, stopping=stopping,
                             check_every=check_every)
        self.max_steps = int(max_steps)
        self.tol = float(tol)
        self.stopping = stopping
        self.check_every = int(check_every)
        self.per_sample = bool(per_sample)

    def get_config(self):
        return {
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

    @staticmethod
    def finite(m, z):
        """Boolean ``(batch,)``: ``m`` and every entry of ``z`` are finite."""
        return ops.logical_and(ops.isfinite(m), ops.all(ops.isfinite(z), axis=(1, 2)))

    def update_done(self, k, done, m, m0):
        """``done`` after iteration ``k`` evaluated ``m``: checked or out of budget."""
        is_check = ops.logical_or(k % self.check_every == 0, k >= self.max_steps)
        met = ops.logical_and(is_check, self.met_tolerance(m, m0))
        return ops.logical_or(ops.logical_or(done, met), k >= self.max_steps)


def validate_solver_args(max_steps, tol, stopping, check_every, eta=None):
    """Raise ``ValueError`` naming the first bad solver argument."""
    if eta is not None and not eta > 0:
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
