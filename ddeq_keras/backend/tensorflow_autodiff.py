"""TensorFlow implementation of the autodiff interface (see `ddeq_keras.backend`)."""

import tensorflow as tf


def value_and_grad(fn, x, has_aux=False, higher_order=False):
    # Any enclosing GradientTape that watches tensors used here records this
    # computation as well, so higher-order gradients need no special handling.
    del higher_order
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fn(x)
        value = out[0] if has_aux else out
    grad = tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return out, grad


def vjp(fn, primals, cotangent):
    primals = [tf.convert_to_tensor(p) for p in primals]
    with tf.GradientTape() as tape:
        for p in primals:
            if p.dtype.is_floating:
                tape.watch(p)
        out = fn(*primals)
    sources = [p for p in primals if p.dtype.is_floating]
    grads = tape.gradient(
        out,
        sources,
        output_gradients=tf.cast(cotangent, out.dtype),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    grads = iter(grads)
    return out, [next(grads) if p.dtype.is_floating else tf.zeros_like(p) for p in primals]


def is_concrete(x):
    # Inside tf.function / XLA every tensor is symbolic.
    return tf.executing_eagerly() and hasattr(x, "numpy")


def send_to_host(callback, *tensors):
    if tf.executing_eagerly():
        callback(*(t.numpy() for t in tensors))
        return
    from tensorflow.python.ops import control_flow_util

    if control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
        return  # XLA cannot call Python: no report from jit-compiled functions

    def run(*values):
        callback(*(v.numpy() for v in values))
        return tf.constant(0)

    # A stateful op: tf.function's automatic control dependencies run it even
    # though its output is unused (also inside a gradient computation).
    tf.py_function(run, list(tensors), Tout=tf.int32)
