"""The loop that drives a solver: compiled, chunked, or unrolled.

A solver supplies ``step(state) -> state`` and ``all_done(state)``. The loop
evaluates the stopping rule only between chunks of ``check_every`` steps:
on PyTorch ``ops.while_loop`` is a Python loop whose condition forces a device
synchronisation, so checking every step would stall a GPU; on JAX and
TensorFlow the whole loop compiles to one ``while`` with no host round trip.
"""

from keras import ops


def iterate(step, state, all_done, num_steps, check_every, unroll=False):
    """Run ``step`` up to ``num_steps`` times, stopping early once ``all_done``.

    Args:
        step: ``state -> state``, one iteration. It must itself turn into a
            no-op for finished samples (so extra iterations are harmless).
        state: the initial loop state (a tuple of tensors).
        all_done: ``state -> bool scalar tensor``.
        num_steps: Python int, the most iterations to run.
        check_every: Python int, iterations between checks of ``all_done``.
        unroll: run a plain Python loop of ``num_steps`` iterations without
            early exit, so reverse-mode autodiff can go through every step
            (``lax.while_loop`` cannot be reverse-differentiated on JAX).

    Returns:
        The final state.
    """
    if unroll:
        for _ in range(num_steps):
            state = step(state)
        return state

    def chunk(n):
        def run(*s):
            return ops.fori_loop(0, n, lambda i, st: step(st), tuple(s))

        return run

    full, rest = divmod(num_steps, check_every)
    if full:
        state = ops.while_loop(
            lambda *s: ops.logical_not(all_done(s)),
            chunk(check_every),
            tuple(state),
            maximum_iterations=full,
        )
    if rest:
        state = ops.cond(
            all_done(state), lambda: tuple(state), lambda: chunk(rest)(*state)
        )
    return tuple(state)
