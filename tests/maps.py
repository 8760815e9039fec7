"""Small known maps for testing the equilibrium layer."""

import keras
import numpy as np
from keras import ops

from ddeq_keras.ops import masked_mean


@keras.saving.register_keras_serializable(package="ddeq_keras_tests")
class SinMap(keras.layers.Layer):
    """``f(z)_i = z_i - s sin(z_i - theta) + w + c (mean_j z_j - z_i)``.

    Equivariant in the particles, with a masked mean so padding would leak if
    masks were ignored. Its particle-wise fixed points sit at
    ``theta + arcsin(w / s) + 2 k pi`` (for ``c = 0``), with Jacobian
    ``1 - sqrt(s^2 - w^2)`` there: a contraction (0.51 for s=0.5, w=0.1), and
    well-separated basins so the particles have distinct equilibria.
    ``theta`` is the context, ``(batch, 1, d)``.
    """

    def __init__(self, coupling=0.05, **kwargs):
        super().__init__(**kwargs)
        self.coupling = coupling

    def build(self, z_shape, context_shape=None):
        d = z_shape[-1]
        self.s = self.add_weight(shape=(d,), initializer=keras.initializers.Constant(0.5), name="s")
        self.w = self.add_weight(shape=(d,), initializer=keras.initializers.Constant(0.1), name="w")

    def call(self, z, context, mask=None):
        mean = masked_mean(z, mask, axis=1, keepdims=True)
        return z - self.s * ops.sin(z - context) + self.w + self.coupling * (mean - z)

    def get_config(self):
        return {**super().get_config(), "coupling": self.coupling}


@keras.saving.register_keras_serializable(package="ddeq_keras_tests")
class ScaleMap(keras.layers.Layer):
    """``f(z)_i = a z_i + 1`` with a per-sample factor ``a`` (the context, ``(batch, 1, 1)``).

    ``|a| < 1``: a contraction (fixed point ``1 / (1 - a)``). ``|a| > 1``: the
    fixed point repels, and plain iteration (``AndersonSolver(memory=1)``)
    diverges geometrically: Riesz ``MMD^2(z, f(z))`` is linear in the
    displacement ``|(a - 1) z + 1|``, so it grows ``|a|``-fold per step; the
    squared distances inside it overflow to inf after ~40 steps for ``a = 3``. (Anderson with memory >= 2
    solves this linear map exactly.)
    """

    def call(self, z, context, mask=None):
        return context * z + 1.0


@keras.saving.register_keras_serializable(package="ddeq_keras_tests")
class QuadraticMap(keras.layers.Layer):
    """``f(z) = z + c z |z|`` with a per-sample ``c`` (the context, ``(batch, 1, 1)``).

    Its only fixed point is 0, and the Euler flow of ``MMD^2(z, f(z))`` heads
    there; but the velocity grows with ``|z|`` (the Jacobian is ``1 + 2c|z|``),
    so a step size too large for ``c`` overshoots farther at every step and the
    flow diverges (``c = 0.3, eta = 30``), while ``c * eta`` small converges.
    """

    def call(self, z, context, mask=None):
        return z + context * z * ops.abs(z)


def separated_particles(rng, batch=2, noise=0.5):
    """Three 2-D particles per sample, each near its own basin of `SinMap`."""
    centers = np.array([[0.0, 0.0], [2 * np.pi, 0.0], [0.0, 2 * np.pi]], "float32")
    z0 = centers[None] + noise * rng.normal(size=(batch, 3, 2))
    theta = 0.3 + 0.1 * rng.normal(size=(batch, 1, 2))
    return z0.astype("float32"), theta.astype("float32")


def grads_wrt_weights_and_context(layer, z0, context, training=True, loss_weights=None, **kw):
    """Gradient of ``sum(out * loss_weights)`` w.r.t. the layer's trainable weights and the
    context, through the backend's own autodiff (via `ddeq_keras.backend.vjp`)."""
    from ddeq_keras import backend

    if not layer.built:
        layer(z0, context, **kw)
    trainable = [ops.convert_to_tensor(v.value) for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]
    n = len(trainable)

    def loss(*leaves):
        out, _ = layer.stateless_call(
            list(leaves[:n]), non_trainable, z0, leaves[n], training=training, **kw
        )
        if isinstance(out, tuple):
            out = out[0]
        return out * loss_weights if loss_weights is not None else out

    out, grads = backend.vjp(
        loss, trainable + [ops.convert_to_tensor(context)], ops.ones(ops.shape(z0))
    )
    if not backend.is_concrete(out):  # traced under jit: leave conversion to the caller
        return out, grads
    return out, [ops.convert_to_numpy(g) for g in grads]


# Flat adjoint options of the tests -> the adjoint's own argument names.
_ADJOINT_FLAT = {"phantom_steps": "steps", "phantom_damping": "damping",
                 "implicit_max_steps": "max_steps", "implicit_tol": "tol",
                 "implicit_method": "method"}


def flow_layer(map_layer, solver="euler", backward="phantom", kernel="riesz",
               return_stats=False, dtype=None, **options):
    """A `GradientFlowEquilibrium` from flat options (solver and adjoint ones).

    The solver defaults to Euler here: most equilibrium tests are about the flow.
    """
    from ddeq_keras.layers import GradientFlowEquilibrium
    from ddeq_keras.solvers import get_adjoint, get_solver

    adjoint_args = {_ADJOINT_FLAT[k]: options.pop(k) for k in list(options)
                    if k in _ADJOINT_FLAT}
    return GradientFlowEquilibrium(
        map_layer, solver=get_solver(solver, **options),
        backward=get_adjoint(backward, **adjoint_args), kernel=kernel,
        return_stats=return_stats, dtype=dtype)
