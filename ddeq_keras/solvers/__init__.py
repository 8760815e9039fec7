"""Equilibrium solvers (how the flow steps and stops), adjoints (how gradients
are taken) and solutions (value + stats), each small and swappable."""

from ddeq_keras.solvers.adjoint import (  # noqa: F401
    ADJOINTS,
    ImplicitAdjoint,
    PhantomAdjoint,
    UnrolledAdjoint,
)
from ddeq_keras.solvers.anderson import AndersonSolver  # noqa: F401
from ddeq_keras.solvers.euler import EulerFlow  # noqa: F401
from ddeq_keras.solvers.problem import FlowProblem  # noqa: F401
from ddeq_keras.solvers.solution import Solution  # noqa: F401
from ddeq_keras.solvers.stopping import StoppingRule  # noqa: F401

SOLVERS = {"euler": EulerFlow, "anderson": AndersonSolver}

# Arguments that only some solvers take; the others ignore them.
_SOLVER_ONLY = {"euler": ("eta",), "anderson": ("memory", "regularization")}


def get_solver(name, **kwargs):
    """A solver by name (``"euler"`` or ``"anderson"``), configured with ``kwargs``.

    ``kwargs`` may hold the arguments of every solver: those that belong only
    to another solver (``eta`` for ``"anderson"``) are ignored.
    """
    if name not in SOLVERS:
        raise ValueError(f"`solver` must be one of {sorted(SOLVERS)}; got {name!r}.")
    foreign = {arg for other, args in _SOLVER_ONLY.items() if other != name for arg in args}
    return SOLVERS[name](**{k: v for k, v in kwargs.items() if k not in foreign})
