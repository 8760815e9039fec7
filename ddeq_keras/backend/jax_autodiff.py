"""JAX implementation of the autodiff interface (see `ddeq_keras.backend`)."""

import jax
import jax.numpy as jnp


def value_and_grad(fn, x, has_aux=False, higher_order=False):
    # JAX composes transformations: an outer grad differentiates through this
    # one automatically, so ``higher_order`` needs no special handling.
    del higher_order
    return jax.value_and_grad(fn, has_aux=has_aux)(x)


def vjp(fn, primals, cotangent):
    out, pullback = jax.vjp(fn, *primals)
    grads = pullback(jnp.asarray(cotangent, dtype=out.dtype))
    # Integer / boolean primals get float0 cotangents: report them as zeros.
    grads = [
        jnp.zeros(p.shape, p.dtype) if g.dtype == jax.dtypes.float0 else g
        for p, g in zip(primals, grads)
    ]
    return out, grads


def is_concrete(x):
    return not isinstance(x, jax.core.Tracer)


def send_to_host(callback, *tensors):
    # Works inside jit and inside a custom_vjp backward pass.
    jax.debug.callback(lambda *values: callback(*(jnp.asarray(v).__array__() for v in values)),
                       *tensors)
