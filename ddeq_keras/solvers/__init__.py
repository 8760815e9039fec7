"""Equilibrium solvers (how the flow steps and stops), adjoints (how gradients
are taken) and solutions (value + stats), each a small, serialisable object.

Example:
>>> from ddeq_keras.solvers import AndersonSolver, PhantomAdjoint, get_solver
>>> get_solver("euler", eta=1.0).eta
1.0
>>> AndersonSolver.from_config(AndersonSolver(memory=3).get_config()).memory
3
"""

import inspect

import keras

from ddeq_keras.solvers.adjoint import (
    ADJOINTS,
    Adjoint,
    ImplicitAdjoint,
    PhantomAdjoint,
    UnrolledAdjoint,
)
from ddeq_keras.solvers.anderson import AndersonSolver
from ddeq_keras.solvers.convergence import (
    ON_NONCONVERGENCE,
    NonConvergenceError,
    NonConvergenceWarning,
    report_nonconvergence,
)
from ddeq_keras.solvers.euler import EulerFlow
from ddeq_keras.solvers.problem import FlowProblem
from ddeq_keras.solvers.solution import (
    CONVERGED,
    DIVERGED,
    MAX_STEPS,
    NON_FINITE,
    RESULT_NAMES,
    Solution,
)
from ddeq_keras.solvers.stopping import StoppingRule

__all__ = [
    "ADJOINTS",
    "Adjoint",
    "AndersonSolver",
    "CONVERGED",
    "DIVERGED",
    "EulerFlow",
    "FlowProblem",
    "ImplicitAdjoint",
    "MAX_STEPS",
    "NON_FINITE",
    "NonConvergenceError",
    "NonConvergenceWarning",
    "ON_NONCONVERGENCE",
    "PhantomAdjoint",
    "RESULT_NAMES",
    "SOLVERS",
    "Solution",
    "StoppingRule",
    "UnrolledAdjoint",
    "get_adjoint",
    "get_solver",
    "report_nonconvergence",
]

SOLVERS = {"euler": EulerFlow, "anderson": AndersonSolver}


def _get(kind, registry, base, identifier, kwargs):
    if isinstance(identifier, base):
        if kwargs:
            raise ValueError(
                f"Options {sorted(kwargs)} were given with a {kind} object "
                f"{identifier!r}: set them on the object instead."
            )
        return identifier
    if isinstance(identifier, dict):  # a serialized object (from get_config)
        obj = keras.saving.deserialize_keras_object(identifier)
        if not isinstance(obj, base):
            raise ValueError(f"Expected a {kind} config; got {identifier!r}.")
        return _get(kind, registry, base, obj, kwargs)
    if not isinstance(identifier, str) or identifier not in registry:
        raise ValueError(
            f"`{kind}` must be one of {sorted(registry)} or a {kind} object; "
            f"got {identifier!r}."
        )
    cls = registry[identifier]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"The {kind} {identifier!r} ({cls.__name__}) does not take {unknown}; "
            f"it takes {sorted(accepted)}."
        )
    return cls(**kwargs)


def get_solver(identifier, **kwargs):
    """A solver from a name (configured with ``kwargs``), a config dict or an object.

    Raises:
        ValueError: an unknown name, or an argument the solver does not take
            (e.g. ``eta`` for ``"anderson"``).
    """
    return _get("solver", SOLVERS, StoppingRule, identifier, kwargs)


def get_adjoint(identifier, **kwargs):
    """An adjoint (``backward``) from a name, a config dict or an object.

    Raises:
        ValueError: an unknown name, or an argument the adjoint does not take.
    """
    return _get("backward", ADJOINTS, Adjoint, identifier, kwargs)
