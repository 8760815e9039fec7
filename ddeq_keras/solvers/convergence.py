"""Reporting samples whose solve did not converge: ignore, warn or raise.

A solver never fails silently inside a compiled step: every sample carries a
result code (`Solution.result`). This module turns the codes of a batch into
one readable message and applies the user's policy to it, on the host, after
the step has run (so the check costs one small copy, not a device sync inside
the loop).
"""

import warnings

import numpy as np

from ddeq_keras.solvers.solution import (
    CONVERGED,
    DIVERGED,
    MAX_STEPS,
    NON_FINITE,
    RESULT_NAMES,
)

ON_NONCONVERGENCE = ("ignore", "warn", "raise")


class NonConvergenceWarning(RuntimeWarning):
    """Some samples did not reach an equilibrium (see `report_nonconvergence`)."""


class NonConvergenceError(RuntimeError):
    """Raised instead of `NonConvergenceWarning` with ``on_nonconvergence="raise"``."""


def check_on_nonconvergence(value):
    """``value`` if it is one of `ON_NONCONVERGENCE`, else a ``ValueError``."""
    if value not in ON_NONCONVERGENCE:
        raise ValueError(
            f"`on_nonconvergence` must be one of {ON_NONCONVERGENCE}; got {value!r}."
        )
    return value


def _advice(code, solver):
    """What a user can do about samples that stopped with ``code``."""
    get = (lambda name, default="?": getattr(solver, name, default)) if solver else (
        lambda name, default="?": default)
    if code == MAX_STEPS:
        return (f"used all max_steps={get('max_steps')} updates without meeting "
                f"tol={get('tol')}: raise the solver's `max_steps` or loosen `tol`")
    if code == NON_FINITE:
        return ("the map produced NaN/inf: check the inputs' scale (raw clouds go "
                "through the model's preprocessor) and the weights")
    if code == DIVERGED:
        return (f"MMD^2 rose {get('divergence_patience')} iterations in a row to over "
                f"{get('divergence_factor')}x its lowest value: lower the step size "
                "(`eta`) of an Euler solver, use solver='anderson', or check the "
                "inputs' scale and the weights")
    return "unknown result code"


def nonconvergence_message(result, solver=None, where="predict"):
    """A message about the samples of ``result`` that did not converge, or None.

    Args:
        result: ``(batch,)`` result codes (`Solution.result`, the ``result``
            stat), any array-like.
        solver: the solver that produced them (its settings go into the advice).
        where: what ran the solve, for the message.
    """
    result = np.asarray(result).reshape(-1)
    failed = np.flatnonzero(result != CONVERGED)
    if failed.size == 0:
        return None
    parts = []
    for code in sorted(set(result[failed].tolist())):
        count = int(np.sum(result == code))
        name = RESULT_NAMES.get(code, "unknown")
        parts.append(f"{count} with result code {code} ({name}): {_advice(code, solver)}")
    shown = failed[:10].tolist()
    more = "" if failed.size <= 10 else f" and {failed.size - 10} more"
    return (
        f"{failed.size} of {result.size} samples did not converge in {where} "
        f"(sample(s) {shown}{more}); their outputs are the solver's best iterates, not "
        f"equilibria. " + "; ".join(parts) + ". Set on_nonconvergence='ignore' to "
        "silence this, or 'raise' to make it an error."
    )


def report_nonconvergence(result, on_nonconvergence="warn", solver=None, where="predict",
                          stacklevel=3):
    """Applies the ``on_nonconvergence`` policy to a batch of result codes.

    Args:
        result: ``(batch,)`` result codes.
        on_nonconvergence: ``"ignore"``, ``"warn"`` (a `NonConvergenceWarning`)
            or ``"raise"`` (a `NonConvergenceError`).
        solver: the solver, for the advice in the message.
        where: what ran the solve, for the message.
        stacklevel: passed to `warnings.warn` (points at the caller's caller).

    Returns:
        The message, or None when every sample converged.

    Example:
    >>> from ddeq_keras.solvers import report_nonconvergence
    >>> report_nonconvergence([0, 0], "raise") is None
    True
    >>> report_nonconvergence([0, 1], "ignore")[:47]
    '1 of 2 samples did not converge in predict (sam'
    """
    check_on_nonconvergence(on_nonconvergence)
    message = nonconvergence_message(result, solver, where)
    if message is None or on_nonconvergence == "ignore":
        return message
    if on_nonconvergence == "raise":
        raise NonConvergenceError(message)
    warnings.warn(message, NonConvergenceWarning, stacklevel=stacklevel)
    return message
