"""`GradientFlowEquilibrium`: a layer whose output is the equilibrium of a map
in the space of measures, found by a Wasserstein gradient flow."""

import keras
from keras import ops

from ddeq_keras.solvers import FlowProblem, get_adjoint, get_solver
from ddeq_keras.validation import validate_flow_inputs


@keras.saving.register_keras_serializable(package="ddeq_keras")
class GradientFlowEquilibrium(keras.layers.Layer):
    """Solves ``Q* = f(Q*, P)`` for a measure of particles.

    The particles ``z`` (``(batch, n, d)``) represent the uniform measure ``Q``;
    an equilibrium is a zero of ``F(z) = 1/2 MMD^2(z, f(z, context))`` (Riesz
    kernel). The map ``f`` is a Keras layer called as
    ``f(z, context, mask=mask)``: it must be permutation-equivariant in ``z``
    and must not draw random numbers (draw dropout masks once outside and pass
    them in ``context``, so the fixed point is well defined and the call is
    pure under ``jit``).

    The solver finds ``z*`` (default `AndersonSolver`: a few evaluations of
    ``f`` to the method's tolerance; `EulerFlow` is the authors' explicit
    Euler flow, ``solver="euler"``). The layer's output *value* is always
    ``z*``, in training and in inference alike; ``backward`` only chooses its
    gradient:
    - `PhantomAdjoint` (``"phantom"``, default, the authors'): the gradient
      of ``k`` damped map steps from ``stop_gradient(z*)``, attached
      straight-through (``z* + (z_k - stop_gradient(z_k))``).
    - `ImplicitAdjoint` (``"implicit"``): solves the adjoint equation of
      ``z* = f(z*)`` per sample with vector-Jacobian products; memory does not
      grow with the number of solver steps.
    - `UnrolledAdjoint` (``"unrolled"``): backpropagation through every solver
      step (tests and small problems).
    With ``training=False`` (``predict`` / ``evaluate``) no gradient is built.

    Particles with ``frozen_mask`` True never move and ``f`` is taken to copy
    them through unchanged; particles with ``mask`` False are padding and
    never influence the valid ones.

    Args:
        map_layer: the map ``f``, a Keras layer.
        solver: a solver object (`AndersonSolver`, `EulerFlow`), a name
            (``"anderson"``, ``"euler"``: default options) or a serialized
            solver config.
        backward: an adjoint object (`PhantomAdjoint`, `ImplicitAdjoint`,
            `UnrolledAdjoint`), a name, or a serialized adjoint config.
        kernel: ``"riesz"`` (the method's, ``-||a - b||``) or ``"gaussian"``
            (bandwidth 1; smooth at the equilibrium).
        return_stats: also return the solver statistics (a dict of ``(batch,)``
            tensors: ``num_steps``, ``num_evaluations``, ``mmd_initial``,
            ``mmd_final``, ``converged``, ``result``; see `Solution`).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        z0: initial particles, ``(batch, n, d)``.
        context: anything ``f`` needs besides ``z`` (a tensor, a dict or list of
            tensors, or None), passed to ``f`` unchanged.
        mask: boolean ``(batch, n)``, False for padding particles.
        frozen_mask: boolean ``(batch, n)``, True for particles that stay put.
        training: Python bool or None.

    Example:
    >>> import keras
    >>> from ddeq_keras.layers import GradientFlowEquilibrium
    >>> from ddeq_keras.solvers import AndersonSolver, PhantomAdjoint
    >>> class Contraction(keras.layers.Layer):
    ...     def call(self, z, context, mask=None):
    ...         return 0.5 * z + context
    >>> layer = GradientFlowEquilibrium(
    ...     Contraction(), solver=AndersonSolver(tol=1e-6), backward=PhantomAdjoint(),
    ...     return_stats=True)
    >>> z_star, stats = layer(keras.random.normal((4, 10, 2)), keras.ops.ones((4, 1, 2)))
    >>> bool(keras.ops.all(stats["converged"]))
    True
    >>> float(keras.ops.max(keras.ops.abs(z_star - 2.0))) < 1e-3
    True
    """

    def __init__(self, map_layer, solver="anderson", backward="phantom", kernel="riesz",
                 return_stats=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(map_layer, keras.layers.Layer):
            raise ValueError(
                f"`map_layer` must be a keras.layers.Layer; got {type(map_layer).__name__}."
            )
        if kernel not in ("riesz", "gaussian"):
            raise ValueError(f"`kernel` must be 'riesz' or 'gaussian'; got kernel={kernel!r}.")
        self.map_layer = map_layer
        self.solver = get_solver(solver)
        self.adjoint = get_adjoint(backward)
        self.kernel = kernel
        self.return_stats = return_stats
        # The output particles are padded exactly like the input ones.
        self.supports_masking = True

    def build(self, z0_shape, context_shape=None, mask_shape=None, frozen_mask_shape=None):
        if not self.map_layer.built:
            # A symbolic call builds the map (and any sub-layers) once.
            z = keras.KerasTensor(z0_shape)
            context = keras.tree.map_shape_structure(
                lambda s: keras.KerasTensor(s), context_shape
            ) if context_shape is not None else None
            mask = keras.KerasTensor(mask_shape, dtype="bool") if mask_shape else None
            self.map_layer(z, context, mask=mask)
        self._particle_dim = z0_shape[-1]
        self.built = True

    # The pure map the solver and the adjoints see: weights and context are
    # explicit inputs so gradients can reach them through custom gradients.
    def _image_fn(self, problem_masks, context_tree):
        trainable = self.map_layer.trainable_variables
        non_trainable = [v.value for v in self.map_layer.non_trainable_variables]
        ctx_leaves, rebuild = _flatten_context(context_tree)
        n_ctx = len(ctx_leaves)
        mask, frozen = problem_masks

        def f(z, leaves):
            out, _ = self.map_layer.stateless_call(
                list(leaves[n_ctx:]), non_trainable, z, rebuild(leaves[:n_ctx]), mask=mask
            )
            return out

        def image(z, z0, leaves):
            movable = FlowProblem(None, mask, frozen).movable(z)
            return ops.where(movable, f(z, leaves), z0)

        def leaves_of(stop):
            ws = [ops.stop_gradient(v) if stop else ops.copy(v) for v in trainable]
            ctx = [ops.stop_gradient(c) for c in ctx_leaves] if stop else list(ctx_leaves)
            return ctx + ws

        return f, image, leaves_of

    def call(self, z0, context=None, mask=None, frozen_mask=None, training=None):
        validate_flow_inputs(
            z0, mask, frozen_mask, context, expected_dim=getattr(self, "_particle_dim", None)
        )
        z0 = ops.cast(z0, self.compute_dtype)
        f, image, leaves_of = self._image_fn((mask, frozen_mask), context)
        unroll = self.adjoint.unroll and training is not False

        # The solve sees stopped weights and context: nothing of it is
        # recorded for the backward pass (flat memory in the number of steps),
        # except for the unrolled adjoint, which differentiates every step.
        solve_leaves = leaves_of(stop=not unroll)
        problem = FlowProblem(lambda z: f(z, solve_leaves), mask, frozen_mask, self.kernel)
        start = z0 if unroll else ops.stop_gradient(z0)
        solution = self.solver.solve(problem, start, unroll=unroll)

        if training is False:  # predict / evaluate: no gradient to build
            out = ops.stop_gradient(solution.value)
        else:
            out = self.adjoint(image, solution.value, z0, leaves_of(stop=False),
                               problem.movable(z0))
        if self.return_stats:
            return out, solution.stats()
        return out

    def compute_mask(self, z0, mask=None):
        return (mask, None) if self.return_stats else mask

    def compute_output_spec(self, z0, context=None, mask=None, frozen_mask=None, training=None):
        out = keras.KerasTensor(z0.shape, dtype=self.compute_dtype)
        if not self.return_stats:
            return out
        batch = (z0.shape[0],)
        return out, {
            "num_steps": keras.KerasTensor(batch, dtype="int32"),
            "num_evaluations": keras.KerasTensor(batch, dtype="int32"),
            "mmd_initial": keras.KerasTensor(batch, dtype=self.compute_dtype),
            "mmd_final": keras.KerasTensor(batch, dtype=self.compute_dtype),
            "converged": keras.KerasTensor(batch, dtype="bool"),
            "result": keras.KerasTensor(batch, dtype="int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "map_layer": keras.saving.serialize_keras_object(self.map_layer),
                "solver": keras.saving.serialize_keras_object(self.solver),
                "backward": keras.saving.serialize_keras_object(self.adjoint),
                "kernel": self.kernel,
                "return_stats": self.return_stats,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["map_layer"] = keras.saving.deserialize_keras_object(config["map_layer"])
        return cls(**config)


def _flatten_context(context):
    """The tensors of a context tree, and a function that rebuilds the tree.

    ``None`` entries (e.g. dropout masks outside training) stay in place and are
    not passed through the custom gradients, which take tensors only.
    """
    if context is None:
        return [], lambda leaves: None
    flat = keras.tree.flatten(context)
    positions = [i for i, leaf in enumerate(flat) if leaf is not None]

    def rebuild(leaves):
        full = list(flat)
        for i, leaf in zip(positions, leaves):
            full[i] = leaf
        return keras.tree.pack_sequence_as(context, full)

    return [flat[i] for i in positions], rebuild
