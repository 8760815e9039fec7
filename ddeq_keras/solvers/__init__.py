"""Equilibrium solvers (how the flow steps and stops), adjoints (how gradients
are taken) and solutions (value + stats), each small and swappable."""

from ddeq_keras.solvers.adjoint import (  # noqa: F401
    ADJOINTS,
    ImplicitAdjoint,
    PhantomAdjoint,
    UnrolledAdjoint,
)
from ddeq_keras.solvers.euler import EulerFlow  # noqa: F401
from ddeq_keras.solvers.problem import FlowProblem  # noqa: F401
from ddeq_keras.solvers.solution import Solution  # noqa: F401

SOLVERS = {"euler": EulerFlow}


def get_solver(name, **kwargs):
    """A solver by name (``"euler"``), configured with ``kwargs``."""
    try:
        return SOLVERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"`solver` must be one of {sorted(SOLVERS)}; got {name!r}.") from None
