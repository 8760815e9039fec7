"""`scan`: a sequential loop with a carry and stacked per-step outputs.

`keras.ops.scan` does this on JAX (``jax.lax.scan``) and PyTorch (a Python
loop), but Keras 3.15's TensorFlow version stores the per-step outputs in
arrays shaped like the carry, so a step whose outputs differ from its carry
(a gradient accumulator carried, one block of results stacked) fails. Here
TensorFlow gets its own ``tf.while_loop`` with ``parallel_iterations=1``: one
step at a time, so a step's temporaries are freed before the next one starts
(memory-bounded blockwise computations rely on that).
"""

import keras
from keras import ops


def scan(f, init, xs):
    """``carry, ys = scan(f, init, xs)`` like ``jax.lax.scan`` (no ``length``,
    no ``reverse``).

    Args:
        f: ``f(carry, x) -> (carry, y)``; ``carry`` keeps its structure, shapes
            and dtypes; ``x`` is a slice of ``xs`` along its first axis.
        init: the initial carry (a tensor or a nest of tensors).
        xs: a tensor or a nest of tensors with the same (static) first axis.

    Returns:
        The final carry and the per-step ``y`` stacked along a new first axis.

    Example:
    >>> from ddeq_keras.backend.loops import scan
    >>> total, partial = scan(lambda c, x: (c + x, c * x), ops.zeros(()), ops.arange(4.0))
    >>> float(total), ops.convert_to_numpy(partial).tolist()
    (6.0, [0.0, 0.0, 2.0, 9.0])
    """
    if keras.config.backend() != "tensorflow":
        return ops.scan(f, init, xs)
    return _tensorflow_scan(f, init, xs)


def _tensorflow_scan(f, init, xs):
    import tensorflow as tf

    xs = tf.nest.map_structure(tf.convert_to_tensor, xs)
    init = tf.nest.map_structure(tf.convert_to_tensor, init)
    flat_xs = tf.nest.flatten(xs)
    length = flat_xs[0].shape[0]
    if length is None:
        raise ValueError("scan needs a static number of steps (the first axis of `xs`).")

    def step_input(i):
        return tf.nest.pack_sequence_as(xs, [x[i] for x in flat_xs])

    # The first step runs outside the loop: it gives the outputs' dtypes and
    # shapes for the arrays that collect them (no step is done twice).
    carry, y = f(init, step_input(0))
    flat_y = tf.nest.flatten(y)
    arrays = [
        tf.TensorArray(t.dtype, size=length, element_shape=t.shape).write(0, t)
        for t in flat_y
    ]

    def body(i, carry, arrays):
        carry, y = f(carry, step_input(i))
        return i + 1, carry, [a.write(i, t) for a, t in zip(arrays, tf.nest.flatten(y))]

    if length > 1:
        _, carry, arrays = tf.while_loop(
            lambda i, *_: i < length,
            body,
            (tf.constant(1), carry, arrays),
            parallel_iterations=1,
        )
    return carry, tf.nest.pack_sequence_as(y, [a.stack() for a in arrays])
