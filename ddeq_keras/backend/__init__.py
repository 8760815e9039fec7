"""The only place in the library that imports a backend framework.

`keras.ops` has no reverse-mode autodiff primitives, yet the gradient flow needs
``grad_z F(z)`` *inside* the forward pass and the implicit backward pass needs
vector-Jacobian products. This module exposes a tiny interface with one small
implementation per backend, chosen by ``keras.config.backend()`` at call time:

- ``value_and_grad(fn, x, has_aux=False, higher_order=False)``
- ``vjp(fn, primals, cotangent)``
- ``is_concrete(x)``: whether a tensor holds values we may inspect in Python
  (eager), or is symbolic (traced under ``jit`` / ``tf.function``).
- ``send_to_host(callback, *tensors)``: calls ``callback`` with the tensors'
  values as NumPy arrays when they are computed, eagerly or from inside a
  compiled function or a backward pass (statistics of the adjoint solve).

Everything else in `ddeq_keras` is written with `keras.ops`.
"""

import importlib

import keras

__all__ = ["is_concrete", "send_to_host", "value_and_grad", "vjp"]

_IMPLEMENTATIONS = {
    "jax": "ddeq_keras.backend.jax_autodiff",
    "tensorflow": "ddeq_keras.backend.tensorflow_autodiff",
    "torch": "ddeq_keras.backend.torch_autodiff",
}


def _impl():
    name = keras.config.backend()
    try:
        module = _IMPLEMENTATIONS[name]
    except KeyError:
        raise NotImplementedError(
            f"ddeq_keras supports the backends {sorted(_IMPLEMENTATIONS)}; "
            f"KERAS_BACKEND is {name!r}."
        ) from None
    return importlib.import_module(module)


def value_and_grad(fn, x, has_aux=False, higher_order=False):
    """Value and gradient of a scalar function of one tensor.

    Args:
        fn: callable ``fn(x) -> scalar`` or, with ``has_aux``, ``(scalar, aux)``.
        x: the tensor to differentiate with respect to.
        has_aux: whether ``fn`` returns auxiliary outputs.
        higher_order: keep the graph of the gradient so that an outer
            differentiation can go through it (needed by unrolled
            backpropagation through a solver). JAX and TensorFlow do this
            whenever an outer transformation is active; PyTorch needs to be told.

    Returns:
        ``(value, grad)`` or, with ``has_aux``, ``((value, aux), grad)``.

    Example:
    >>> from ddeq_keras.backend import value_and_grad
    >>> v, g = value_and_grad(lambda x: keras.ops.sum(x**2), keras.ops.ones(3))
    >>> float(v), ops.convert_to_numpy(g).tolist()
    (3.0, [2.0, 2.0, 2.0])
    """
    return _impl().value_and_grad(fn, x, has_aux=has_aux, higher_order=higher_order)


def vjp(fn, primals, cotangent):
    """Vector-Jacobian product of ``fn`` at ``primals``.

    Args:
        fn: callable taking ``len(primals)`` positional tensors, returning one
            tensor.
        primals: list of tensors.
        cotangent: tensor shaped like ``fn(*primals)``.

    Returns:
        ``(output, grads)`` with one gradient per primal (zeros where the
        output does not depend on it).
    """
    return _impl().vjp(fn, list(primals), cotangent)


def is_concrete(x):
    """True if ``x`` holds concrete values (not a tracer or symbolic tensor)."""
    return _impl().is_concrete(x)


def send_to_host(callback, *tensors):
    """Calls ``callback(*numpy_arrays)`` with the values of ``tensors`` when they exist.

    Eager code calls it at once; under ``jax.jit`` (``jax.debug.callback``) and
    ``tf.function`` (``tf.py_function``) it runs when the compiled function
    computes the values, also inside a custom gradient's backward pass. Inside
    a TensorFlow function compiled with XLA (``jit_compile=True``) nothing is
    sent: XLA cannot call Python there.
    """
    return _impl().send_to_host(callback, *tensors)
