"""`DDEQClassifier`: point-cloud classification with a DDEQ."""

import keras
from keras import ops

from ddeq_keras.layers import GradientFlowEquilibrium, MaskedMaxPooling
from ddeq_keras.models.ddeq.base import (
    SOLVER_ARGS,
    SOLVER_DEFAULTS,
    SolverMetricsMixin,
)
from ddeq_keras.models.ddeq.network import DDEQNetwork
from ddeq_keras.models.inputs import prepare_cloud

NETWORK_ARGS = ("latent_dim", "hidden_dim", "bilinear_dim", "num_heads", "ff_dim",
                "num_cross_blocks", "dropout", "epsilon", "norm_first", "precompute_context")


@keras.saving.register_keras_serializable(package="ddeq_keras")
class DDEQClassifier(SolverMetricsMixin, keras.Model):
    """Classifies point clouds by the equilibrium of particles conditioned on them.

    The input cloud ``x`` (a uniform measure over its valid points) conditions the
    map ``f = DDEQNetwork``; ``num_particles`` latent particles start from
    ``N(0, I)`` and flow to the equilibrium ``z* = f(z*, x)`` (as measures); a
    masked max-pool over the particles and a Dense layer give the logits.

    Particle initialisation: in training, fresh ``N(0, I)`` noise every forward
    pass (the authors'); in inference, a fixed draw stored in the weights
    (``inference_particles``), so predictions are deterministic and identical on
    every backend for the same weights.

    Args:
        num_classes: number of classes.
        point_dim: coordinates per point (2 for MNIST, 3 for ModelNet40).
        num_particles: latent particles (10).
        latent_dim, hidden_dim, bilinear_dim, num_heads, ff_dim, num_cross_blocks,
            dropout, epsilon, norm_first, precompute_context: see `DDEQNetwork`.
        solver, eta, max_steps, tol, stopping, check_every, per_sample, backward,
            phantom_steps, phantom_damping, implicit_max_steps, implicit_tol: see
            `GradientFlowEquilibrium`.
        seed: seed of the particle noise and the dropout masks.
        **kwargs: base `keras.Model` arguments.

    Inputs:
        ``{"points": (batch, n, point_dim), "mask": (batch, n) bool}`` (or just the
        points tensor, all valid).

    Example:
    >>> model = DDEQClassifier(num_classes=10, point_dim=2)
    >>> model.compile()  # Adam 1e-3, sparse cross-entropy on logits, accuracy
    >>> model.fit({"points": x, "mask": mask}, labels, batch_size=64)
    """

    def __init__(
        self,
        num_classes,
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
        solver=SOLVER_DEFAULTS["solver"],
        eta=SOLVER_DEFAULTS["eta"],
        max_steps=SOLVER_DEFAULTS["max_steps"],
        tol=SOLVER_DEFAULTS["tol"],
        stopping=SOLVER_DEFAULTS["stopping"],
        check_every=SOLVER_DEFAULTS["check_every"],
        per_sample=SOLVER_DEFAULTS["per_sample"],
        backward=SOLVER_DEFAULTS["backward"],
        phantom_steps=SOLVER_DEFAULTS["phantom_steps"],
        phantom_damping=SOLVER_DEFAULTS["phantom_damping"],
        implicit_max_steps=SOLVER_DEFAULTS["implicit_max_steps"],
        implicit_tol=SOLVER_DEFAULTS["implicit_tol"],
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        args = dict(locals())
        self.num_classes = int(num_classes)
        self.point_dim = int(point_dim)
        self.num_particles = int(num_particles)
        self.seed = seed
        for name in NETWORK_ARGS + SOLVER_ARGS:
            setattr(self, name, args[name])
        self.network = DDEQNetwork(**{k: args[k] for k in NETWORK_ARGS}, seed=seed,
                                   dtype=self.dtype_policy, name="network")
        self.equilibrium = GradientFlowEquilibrium(
            self.network, **{k: args[k] for k in SOLVER_ARGS}, return_stats=True,
            dtype=self.dtype_policy, name="equilibrium",
        )
        self.pool = MaskedMaxPooling(name="pool", dtype=self.dtype_policy)
        self.head = keras.layers.Dense(self.num_classes, name="head", dtype=self.dtype_policy)
        self.noise_seed = keras.random.SeedGenerator(seed)
        self._init_solver_metrics()

    def build(self, input_shape):
        points_shape = input_shape["points"] if isinstance(input_shape, dict) else input_shape
        points_shape = tuple(points_shape)
        z_shape = (points_shape[0], self.num_particles, self.latent_dim)
        self.network.build_for(z_shape, points_shape)
        self.equilibrium.build(z_shape)
        self.pool.build(z_shape)
        self.head.build((points_shape[0], self.latent_dim))
        self.inference_particles = self.add_weight(
            shape=(self.num_particles, self.latent_dim),
            initializer=keras.initializers.RandomNormal(seed=self.seed),
            trainable=False,
            name="inference_particles",
        )
        self.built = True

    def initial_particles(self, batch_size, training=None):
        """``(batch, num_particles, latent_dim)`` starting particles (see class doc)."""
        if training:
            shape = (batch_size, self.num_particles, self.latent_dim)
            return keras.random.normal(shape, seed=self.noise_seed, dtype=self.compute_dtype)
        z = ops.cast(self.inference_particles, self.compute_dtype)
        return ops.broadcast_to(ops.expand_dims(z, 0), (batch_size,) + tuple(z.shape))

    def call(self, inputs, training=None):
        points, mask = prepare_cloud(inputs, self.point_dim)
        batch = ops.shape(points)[0]
        context = self.network.compute_context(points, mask, batch_size=batch, training=training)
        z0 = self.initial_particles(batch, training=training)
        z, stats = self.equilibrium(z0, context, training=training)
        self._record_flow_stats(stats)
        return self.head(self.pool(z))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)
        self._update_solver_metrics()
        return loss

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """`keras.Model.compile` with the authors' defaults for ``"auto"``.

        Adam (lr 1e-3, epsilon 1e-8 as in PyTorch), sparse categorical
        cross-entropy on logits, accuracy.
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3, epsilon=1e-8)
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "point_dim": self.point_dim,
                "num_particles": self.num_particles,
                "seed": self.seed,
                **{k: getattr(self, k) for k in NETWORK_ARGS + SOLVER_ARGS},
            }
        )
        return config
