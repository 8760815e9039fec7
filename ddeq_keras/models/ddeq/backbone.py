"""`DDEQBackbone`: the map f, the equilibrium layer and the initial particles."""

import keras
from keras import ops

from ddeq_keras.layers import GradientFlowEquilibrium
from ddeq_keras.models.ddeq.network import DDEQNetwork
from ddeq_keras.models.inputs import prepare_cloud

# The arguments the backbone passes on to `DDEQNetwork`.
NETWORK_ARGS = ("latent_dim", "hidden_dim", "bilinear_dim", "num_heads", "ff_dim",
                "num_cross_blocks", "dropout", "epsilon", "norm_first", "precompute_context",
                "residual")
PARTICLE_KEYS = ("particles", "particle_mask", "frozen_mask")


@keras.saving.register_keras_serializable(package="ddeq_keras")
class DDEQBackbone(keras.Model):
    """A masked point cloud in, the equilibrium particles ``z* = f(z*, x)`` out.

    The cloud ``x`` (a uniform measure over its valid points) conditions the
    map ``f = DDEQNetwork``; latent particles start from ``z0`` and the
    equilibrium layer (`GradientFlowEquilibrium`) solves for the measure
    ``Q*`` with ``f(Q*, x) = Q*``. Tasks (`DDEQClassifier`, `DDEQCompleter`)
    are thin heads on it.

    Initial particles: given in the inputs (``"particles"``, with optional
    ``"particle_mask"`` and ``"frozen_mask"``: what completion does), or
    ``num_particles`` drawn by the backbone: in training fresh ``N(0, I)``
    noise every forward pass (the authors'), in inference a fixed draw stored
    in the weights (``inference_particles``), so predictions are deterministic
    and the same on every backend for the same weights.

    Args:
        point_dim: coordinates per point (2 for MNIST, 3 for ModelNet40).
        num_particles: latent particles drawn by the backbone (10); None when
            the task always passes its own ``"particles"``.
        latent_dim, hidden_dim, bilinear_dim, num_heads, ff_dim,
            num_cross_blocks, dropout, epsilon, norm_first,
            precompute_context, residual: see `DDEQNetwork` (``residual="initial"``
            hands the map the starting particles ``z0`` with the context).
        solver: a solver object or name (default ``"anderson"``), see
            `GradientFlowEquilibrium`.
        backward: an adjoint object or name (default ``"phantom"``).
        kernel: the MMD kernel (``"riesz"``).
        seed: seed of the particle noise, the inference particles and the
            dropout masks.
        **kwargs: base `keras.Model` arguments.

    Inputs:
        ``{"points": (batch, n, point_dim), "mask": (batch, n) bool}`` and
        optionally ``"particles"`` ``(batch, k, latent_dim)``,
        ``"particle_mask"`` and ``"frozen_mask"`` ``(batch, k)`` bool.

    Outputs:
        ``{"particles": z* (batch, k, latent_dim), "stats": {...}}`` with the
        per-sample solver statistics (see `Solution`).

    Example:
    >>> import numpy as np
    >>> from ddeq_keras.models import DDEQBackbone
    >>> backbone = DDEQBackbone(point_dim=2, latent_dim=16, hidden_dim=4,
    ...                         bilinear_dim=4, num_heads=2, ff_dim=16)
    >>> out = backbone({"points": np.random.rand(2, 30, 2).astype("float32"),
    ...                 "mask": np.ones((2, 30), bool)})
    >>> tuple(out["particles"].shape), sorted(out["stats"])[:2]
    ((2, 10, 16), ['converged', 'mmd_final'])
    """

    def __init__(
        self,
        point_dim,
        num_particles=10,
        latent_dim=128,
        hidden_dim=16,
        bilinear_dim=16,
        num_heads=32,
        ff_dim=512,
        num_cross_blocks=1,
        dropout=0.1,
        epsilon=1e-5,
        norm_first=False,
        precompute_context=True,
        residual="iterate",
        solver="anderson",
        backward="phantom",
        kernel="riesz",
        seed=None,
        **kwargs,
    ):
        # A fixed default name keeps variable paths ("<task>/backbone/...") stable.
        kwargs.setdefault("name", "backbone")
        super().__init__(**kwargs)
        args = dict(locals())
        self.point_dim = int(point_dim)
        self.num_particles = None if num_particles is None else int(num_particles)
        self.seed = seed
        for name in NETWORK_ARGS:
            setattr(self, name, args[name])
        dt = self.dtype_policy
        self.network = DDEQNetwork(**{k: args[k] for k in NETWORK_ARGS}, seed=seed, dtype=dt,
                                   name="network")
        if self.num_particles is None:
            # As many particles as points (the completer): the encoder's attention
            # is as large as the map's and lives through the same training step.
            self.network.x_self_attention.attention.tight_memory = True
        self.equilibrium = GradientFlowEquilibrium(
            self.network, solver=solver, backward=backward, kernel=kernel, return_stats=True,
            dtype=dt, name="equilibrium",
        )
        self.noise_seed = keras.random.SeedGenerator(seed)

    @property
    def solver(self):
        return self.equilibrium.solver

    @property
    def backward(self):
        return self.equilibrium.adjoint

    def build(self, input_shape):
        points_shape = input_shape["points"] if isinstance(input_shape, dict) else input_shape
        points_shape = tuple(points_shape)
        k = self.num_particles
        if isinstance(input_shape, dict) and "particles" in input_shape:
            k = tuple(input_shape["particles"])[1]
        z_shape = (points_shape[0], k, self.latent_dim)
        self.network.build_for(z_shape, points_shape)
        self.equilibrium.build(z_shape)
        if self.num_particles is not None:
            self.inference_particles = self.add_weight(
                shape=(self.num_particles, self.latent_dim),
                # N(0, I) like the training noise (Keras's default stddev is 0.05).
                initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed),
                trainable=False,
                name="inference_particles",
            )
        self.built = True

    def initial_particles(self, batch_size, training=None):
        """``(batch, num_particles, latent_dim)`` starting particles (see class doc)."""
        if self.num_particles is None:
            raise ValueError(
                "This backbone has num_particles=None: pass the initial particles as "
                "inputs['particles']."
            )
        if training:
            shape = (batch_size, self.num_particles, self.latent_dim)
            return keras.random.normal(shape, seed=self.noise_seed, dtype=self.compute_dtype)
        z = ops.cast(self.inference_particles, self.compute_dtype)
        return ops.broadcast_to(ops.expand_dims(z, 0), (batch_size,) + tuple(z.shape))

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict):
            inputs = {"points": inputs}
        cloud = {k: v for k, v in inputs.items() if k not in PARTICLE_KEYS}
        points, mask = prepare_cloud(cloud, self.point_dim)
        batch = ops.shape(points)[0]
        context = self.network.compute_context(points, mask, batch_size=batch, training=training)
        z0 = inputs.get("particles")
        if z0 is None:
            z0 = self.initial_particles(batch, training=training)
        if self.residual == "initial":  # input injection: each particle's own start
            context = {**context, "initial": ops.cast(z0, self.compute_dtype)}
        z, stats = self.equilibrium(z0, context, mask=inputs.get("particle_mask"),
                                    frozen_mask=inputs.get("frozen_mask"), training=training)
        return {"particles": z, "stats": stats}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "point_dim": self.point_dim,
                "num_particles": self.num_particles,
                **{k: getattr(self, k) for k in NETWORK_ARGS},
                "solver": keras.saving.serialize_keras_object(self.solver),
                "backward": keras.saving.serialize_keras_object(self.backward),
                "kernel": self.equilibrium.kernel,
                "seed": self.seed,
            }
        )
        return config
