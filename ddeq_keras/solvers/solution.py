"""The result of an equilibrium solve: the value and its statistics."""

from typing import Any, NamedTuple


class Solution(NamedTuple):
    """What a solver returns.

    Attributes:
        value: the particles ``z*``, ``(batch, n, d)``.
        num_steps: ``(batch,)`` int32, flow steps (particle updates) applied to
            each sample.
        num_evaluations: ``(batch,)`` int32, evaluations of the map each
            sample needed until it stopped (`EulerFlow`: each with a
            vector-Jacobian product; `AndersonSolver`: without).
        mmd_initial: ``(batch,)``, ``MMD^2(z_0, f(z_0))``.
        mmd_final: ``(batch,)``, ``MMD^2(z*, f(z*))``.
        converged: ``(batch,)`` bool, whether each sample met the tolerance.
    """

    value: Any
    num_steps: Any
    num_evaluations: Any
    mmd_initial: Any
    mmd_final: Any
    converged: Any

    def stats(self):
        """The statistics as a dict of tensors (everything but ``value``)."""
        return {
            "num_steps": self.num_steps,
            "num_evaluations": self.num_evaluations,
            "mmd_initial": self.mmd_initial,
            "mmd_final": self.mmd_final,
            "converged": self.converged,
        }
