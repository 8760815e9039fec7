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

    A sample also stops, whatever ``per_sample`` says, when it fails:
    - its map gives NaN/inf (result `NON_FINITE`), or
    - it diverges (result `DIVERGED`): ``m_k`` rose in each of the last
      ``divergence_patience`` iterations and is above ``divergence_factor``
      times the lowest ``m`` the sample reached. Both tests run at every
      iteration (they cost a few elementwise ops), so a blow-up stops before
      it overflows into NaN.
    Failed samples return their best (lowest ``m``) finite iterate.

    Args:
        max_steps: most updates.
        tol: tolerance of the stopping rule (the authors: 1e-4).
        stopping: ``"rel"`` or ``"abs"``.
        check_every: iterations between checks (the authors: 100).
        per_sample: stop samples independently (default) or by batch means.
        divergence_patience: rises in a row that count as divergence (5);
            None never stops a sample for divergence.
        divergence_factor: how far above its lowest ``m`` a diverging sample
            must be (100): a healthy solve may rise for a few steps (Anderson
            extrapolates, Euler oscillates), but not 100-fold.
    """

    def __init__(self, max_steps=200, tol=1e-4, stopping="rel", check_every=1, per_sample=True,
                 divergence_patience=5, divergence_factor=100.0):
        validate_solver_args(max_steps=max_steps, tol=tol, stopping=stopping,
                             check_every=check_every, divergence_patience=divergence_patience,
                             divergence_factor=divergence_factor)
        self.max_steps = int(max_steps)
        self.tol = float(tol)
        self.stopping = stopping
        self.check_every = int(check_every)
        self.per_sample = bool(per_sample)
        self.divergence_patience = (None if divergence_patience is None
                                    else int(divergence_patience))
        self.divergence_factor = float(divergence_factor)

    def get_config(self):
        return {
            "max_steps": self.max_steps,
            "tol": self.tol,
            "stopping": self.stopping,
            "check_every": self.check_every,
            "per_sample": self.per_sample,
            "divergence_patience": self.divergence_patience,
            "divergence_factor": self.divergence_factor,
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

    @staticmethod
    def start_watch(z0):
        """The failure watch before the first iteration: ``(best_z, best_m, rises, diverged)``.

        ``best_z`` / ``best_m``: each sample's lowest-``m`` finite iterate and
        its ``m`` (inf until the first finite evaluation); ``rises``: how many
        iterations in a row ``m`` rose; ``diverged``: stopped for divergence.
        """
        batch = ops.shape(z0)[0]
        return (z0, ops.full((batch,), float("inf"), dtype=z0.dtype),
                ops.zeros((batch,), dtype="int32"), ops.zeros((batch,), dtype="bool"))

    def update_watch(self, watch, k, active, z, m, m_prev):
        """The watch after iteration ``k`` evaluated ``m = MMD^2(z, f(z))``.

        Args:
            watch: the previous watch (see `start_watch`).
            k: the iteration (0 evaluates the start).
            active: ``(batch,)`` bool, samples still running whose evaluation
                was finite (the others keep their watch as it is).
            z: the iterate just evaluated; m: its ``(batch,)`` MMD^2;
            m_prev: the previous iteration's MMD^2.
        """
        best_z, best_m, rises, diverged = watch
        better = ops.logical_and(active, m < best_m)  # NaN never counts as better
        best_z = ops.where(ops.reshape(better, (-1, 1, 1)), z, best_z)
        best_m = ops.where(better, m, best_m)
        if self.divergence_patience is None:
            return best_z, best_m, rises, diverged
        rose = ops.logical_and(ops.logical_and(active, k > 0), m > m_prev)
        rises = ops.where(rose, rises + 1, ops.where(active, ops.zeros_like(rises), rises))
        far = m > self.divergence_factor * best_m
        blown = ops.logical_and(rises >= self.divergence_patience, far)
        diverged = ops.logical_or(diverged, ops.logical_and(active, blown))
        return best_z, best_m, rises, diverged

    def update_done(self, k, done, m, m0):
        """``done`` after iteration ``k`` evaluated ``m``: checked or out of budget."""
        is_check = ops.logical_or(k % self.check_every == 0, k >= self.max_steps)
        met = ops.logical_and(is_check, self.met_tolerance(m, m0))
        return ops.logical_or(ops.logical_or(done, met), k >= self.max_steps)


def validate_solver_args(max_steps, tol, stopping, check_every, eta=None,
                         divergence_patience=None, divergence_factor=100.0):
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
    if divergence_patience is not None and (
            int(divergence_patience) != divergence_patience or divergence_patience < 1):
        raise ValueError(
            "`divergence_patience` must be an integer >= 1 or None; got "
            f"divergence_patience={divergence_patience!r}."
        )
    if not divergence_factor > 1:
        raise ValueError(
            f"`divergence_factor` must be > 1; got divergence_factor={divergence_factor!r}."
        )
