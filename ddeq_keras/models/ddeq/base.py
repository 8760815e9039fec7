"""What every DDEQ model shares: solver options and solver metrics."""

import keras
from keras import ops

SOLVER_ARGS = ("solver", "eta", "max_steps", "tol", "stopping", "check_every", "per_sample",
               "backward", "phantom_steps", "phantom_damping", "implicit_max_steps",
               "implicit_tol")
SOLVER_DEFAULTS = dict(solver="euler", eta=5.0, max_steps=200, tol=1e-4, stopping="rel",
                       check_every=10, per_sample=True, backward="phantom", phantom_steps=1,
                       phantom_damping=1.0, implicit_max_steps=100, implicit_tol=1e-6)


class SolverMetricsMixin:
    """Adds the solver statistics of the last forward pass to `fit`/`evaluate` logs.

    `call` stores the statistics with `_record_flow_stats`; `compute_loss` (which
    Keras runs inside the same traced step on every backend, with metric
    variables handled statelessly on JAX) folds them into three metrics:
    ``flow_steps`` (mean steps per sample), ``flow_rel_mmd`` (mean final
    ``MMD^2`` relative to the initial one) and ``flow_converged`` (share of
    samples that met the tolerance).
    """

    def _init_solver_metrics(self):
        self.flow_steps_tracker = keras.metrics.Mean(name="flow_steps")
        self.flow_rel_mmd_tracker = keras.metrics.Mean(name="flow_rel_mmd")
        self.flow_converged_tracker = keras.metrics.Mean(name="flow_converged")
        self._flow_stats = None

    def _record_flow_stats(self, stats):
        self._flow_stats = stats

    def _update_solver_metrics(self):
        stats, self._flow_stats = self._flow_stats, None
        if stats is None:
            return
        initial = ops.maximum(stats["mmd_initial"], 1e-30)
        self.flow_steps_tracker.update_state(ops.cast(stats["num_steps"], "float32"))
        self.flow_rel_mmd_tracker.update_state(stats["mmd_final"] / initial)
        self.flow_converged_tracker.update_state(ops.cast(stats["converged"], "float32"))

    def solver_config(self):
        return {k: getattr(self, k) for k in SOLVER_ARGS}
