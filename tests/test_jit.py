"""Forward and backward passes compile: `jax.jit` on JAX, XLA (`jit_compile=True`) on
TensorFlow. PyTorch has no such whole-graph compilation in this sense (`torch.compile`
is a separate, optional tool), so there the same function runs eagerly and is compared
with itself through the same code path."""

import numpy as np
import pytest
from keras import ops

from conftest import BACKEND, to_numpy
from maps import SinMap, grads_wrt_weights_and_context, separated_particles, flow_layer


def _compiled(fn):
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


@pytest.mark.parametrize("solver", ["euler", "anderson"])
@pytest.mark.parametrize("backward", ["phantom", "implicit"])
@pytest.mark.parametrize("check_every", [1, 7])
def test_forward_and_backward_compile(rng, backward, check_every, solver):
    z0, theta = separated_particles(rng, batch=2)
    mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
    layer = flow_layer(SinMap(), solver=solver, max_steps=30, tol=1e-3,
                       **({"eta": 1.0} if solver == "euler" else {}),
                                    backward=backward,
                                    check_every=check_every, kernel="gaussian", return_stats=True)
    layer(z0, theta, mask=mask)  # build eagerly

    def fwd_bwd(z0, theta, mask):
        out, grads = grads_wrt_weights_and_context(layer, z0, theta, mask=mask)
        _, stats = layer(z0, theta, mask=mask)
        return out, grads, stats["num_steps"]

    def as_np(result):
        out, grads, steps = result
        return to_numpy(out), [to_numpy(g) for g in grads], to_numpy(steps)

    eager = as_np(fwd_bwd(z0, theta, mask))
    compiled = as_np(_compiled(fwd_bwd)(ops.convert_to_tensor(z0), ops.convert_to_tensor(theta),
                                         ops.convert_to_tensor(mask)))
    # Same arithmetic, possibly fused differently by the compiler: 1e-4.
    np.testing.assert_allclose(compiled[0], eager[0], atol=1e-4)
    for a, b in zip(compiled[1], eager[1]):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(compiled[2], eager[2])
    steps = compiled[2]
    assert np.all((steps <= 30) & ((steps % check_every == 0) | (steps == 30)))
