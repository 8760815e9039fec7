"""The result of an equilibrium solve: the value, its statistics, a result code."""

from typing import Any, NamedTuple

from keras import ops

# Per-sample result codes (``Solution.result``, the ``result`` stat).
CONVERGED = 0     # met the stopping rule
MAX_STEPS = 1     # used its whole budget without meeting it (best iterate returned)
NON_FINITE = 2    # the map produced NaN/inf: stopped at its best finite iterate
DIVERGED = 3      # MMD^2 kept growing (see `StoppingRule`): stopped at its best iterate
RESULT_NAMES = {CONVERGED: "converged", MAX_STEPS: "max_steps", NON_FINITE: "non_finite",
                DIVERGED: "diverged"}


def result_codes(converged, non_finite, diverged=None):
    """``(batch,)`` int32 result codes from boolean ``(batch,)`` tensors.

    A sample stops for one reason only (a non-finite evaluation is never
    tested for divergence), so the order of precedence below never matters in
    practice: non-finite, then diverged, then converged or out of budget.
    """
    code = ops.where(converged, CONVERGED, MAX_STEPS)
    if diverged is not None:
        code = ops.where(diverged, DIVERGED, code)
    return ops.cast(ops.where(non_finite, NON_FINITE, code), "int32")


class Solution(NamedTuple):
    """What a solver returns.

    Attributes:
        value: the particles ``z*``, ``(batch, n, d)``.
        num_steps: ``(batch,)`` int32, updates applied to each sample.
        num_evaluations: ``(batch,)`` int32, evaluations of the map each
            sample needed until it stopped (`EulerFlow`: each with a
            vector-Jacobian product; `AndersonSolver`: without).
        mmd_initial: ``(batch,)``, ``MMD^2(z_0, f(z_0))``.
        mmd_final: ``(batch,)``, ``MMD^2(z*, f(z*))``.
        converged: ``(batch,)`` bool, whether each sample met the tolerance.
        result: ``(batch,)`` int32 result code: `CONVERGED` (0), `MAX_STEPS`
            (1), `NON_FINITE` (2) or `DIVERGED` (3). Samples with codes 2 and
            3 return their best (lowest ``MMD^2``) finite iterate, never NaN.
    """

    value: Any
    num_steps: Any
    num_evaluations: Any
    mmd_initial: Any
    mmd_final: Any
    converged: Any
    result: Any

    def stats(self):
        """The statistics as a dict of tensors (everything but ``value``)."""
        return {
            "num_steps": self.num_steps,
            "num_evaluations": self.num_evaluations,
            "mmd_initial": self.mmd_initial,
            "mmd_final": self.mmd_final,
            "converged": self.converged,
            "result": self.result,
        }
