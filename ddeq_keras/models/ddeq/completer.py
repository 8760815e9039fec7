"""`DDEQCompleter`: point-cloud completion with a DDEQ (method note, section 6)."""

import keras
from keras import ops

from ddeq_keras.layers import AffineCouplingEmbedding, GradientFlowEquilibrium
from ddeq_keras.models.ddeq.base import (
    SOLVER_ARGS,
    SOLVER_DEFAULTS,
    SolverMetricsMixin,
)
from ddeq_keras.models.ddeq.classifier import NETWORK_ARGS
from ddeq_keras.models.ddeq.network import DDEQNetwork
from ddeq_keras.models.inputs import prepare_cloud
from ddeq_keras.ops import chamfer_distance, masked_mean, masked_std, mmd2


def kde_entropy(points, mask, bandwidth=1.0):
    """Gaussian-KDE estimate of the entropy of each sample's valid points, ``(batch,)``.

    ``H = -mean_i log(mean_j N(y_i - y_j; 0, bandwidth^2 I))`` over valid points
    (up to the constant of the Gaussian's normalisation).
    """
    diff = ops.expand_dims(points, 2) - ops.expand_dims(points, 1)
    k = ops.exp(-ops.sum(ops.square(diff), axis=-1) / (2.0 * bandwidth**2))
    w = ops.cast(mask, points.dtype)
    n = ops.maximum(ops.sum(w, axis=1, keepdims=True), 1.0)
    density = ops.sum(k * ops.expand_dims(w, 1), axis=2) / n
    log_density = ops.log(ops.maximum(density, 1e-30))
    return -ops.sum(log_density * w, axis=1) / ops.squeeze(n, 1)


@keras.saving.register_keras_serializable(package="ddeq_keras")
class DDEQCompleter(SolverMetricsMixin, keras.Model):
    """Completes a partial point cloud by the equilibrium of particles.

    With a partial cloud of ``n`` valid points padded to length ``M``:
    - ``floor(growth * n)`` particles are active (capped at ``M``): the ``n``
      observed points sit in their own slots and stay frozen (``f`` copies them
      through), the others start from a Gaussian with the partial cloud's
      per-axis masked mean and std;
    - points enter the latent space by zero-padding and one affine coupling
      layer (`AffineCouplingEmbedding`);
    - the flow runs on the active particles conditioned on the partial cloud;
    - the output cloud is the first ``point_dim`` coordinates of ``z*``.

    Loss (``compile()`` default): masked Riesz ``MMD^2`` between the output and
    the complete cloud minus ``entropy_weight`` times a Gaussian-KDE entropy of
    the generated points. The Chamfer distance is logged as ``chamfer``.

    Inputs: ``{"points": (batch, M, point_dim), "mask": (batch, M)}`` (partial).
    Targets: ``{"points": (batch, K, point_dim), "mask": (batch, K)}`` (complete).
    Outputs: ``{"points": (batch, M, point_dim), "mask": (batch, M)}``.

    Args:
        point_dim: coordinates per point (2 for MNIST completion).
        growth: active particles per observed point (1.275).
        entropy_weight: weight of the KDE entropy in the loss (1e-6).
        entropy_bandwidth: KDE bandwidth (1.0).
        latent_dim ... precompute_context: see `DDEQNetwork` (3 cross blocks by default).
        solver ... implicit_tol: see `GradientFlowEquilibrium`.
        seed: seed of the initial noise and the dropout masks.

    Example:
    >>> model = DDEQCompleter(point_dim=2)
    >>> model.compile()
    >>> model.fit(partial_dataset_of_pairs, epochs=1)
    """

    def __init__(
        self,
        point_dim=2,
        growth=1.275,
        entropy_weight=1e-6,
        entropy_bandwidth=1.0,
        latent_dim=128,
        hidden_dim=16,
        bilinear_dim=16,
        num_heads=32,
        ff_dim=512,
        num_cross_blocks=3,
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
        if not growth >= 1.0:
            raise ValueError(f"`growth` must be >= 1; got growth={growth!r}.")
        self.point_dim = int(point_dim)
        self.growth = float(growth)
        self.entropy_weight = float(entropy_weight)
        self.entropy_bandwidth = float(entropy_bandwidth)
        self.seed = seed
        for name in NETWORK_ARGS + SOLVER_ARGS:
            setattr(self, name, args[name])
        dt = self.dtype_policy
        self.network = DDEQNetwork(**{k: args[k] for k in NETWORK_ARGS}, seed=seed, dtype=dt,
                                   name="network")
        self.embedding = AffineCouplingEmbedding(latent_dim, hidden_units=latent_dim // 2,
                                                 dtype=dt, name="embedding")
        self.equilibrium = GradientFlowEquilibrium(
            self.network, **{k: args[k] for k in SOLVER_ARGS}, return_stats=True, dtype=dt,
            name="equilibrium",
        )
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.chamfer_tracker = keras.metrics.Mean(name="chamfer")
        self._init_solver_metrics()

    def build(self, input_shape):
        points_shape = input_shape["points"] if isinstance(input_shape, dict) else input_shape
        points_shape = tuple(points_shape)
        z_shape = points_shape[:-1] + (self.latent_dim,)
        self.embedding.build(points_shape)
        self.network.build_for(z_shape, points_shape)
        self.equilibrium.build(z_shape)
        self.built = True

    def particle_masks(self, mask):
        """``(valid, frozen)`` particle masks from the partial cloud's mask."""
        observed = ops.cast(mask, "bool")
        length = ops.shape(observed)[1]
        n_in = ops.sum(ops.cast(observed, "int32"), axis=1, keepdims=True)
        n_active = ops.minimum(
            ops.cast(ops.floor(self.growth * ops.cast(n_in, "float32")), "int32"), length
        )
        # The free slots, in order, take the new particles.
        free = ops.logical_not(observed)
        rank = ops.cumsum(ops.cast(free, "int32"), axis=1) - 1
        new = ops.logical_and(free, rank < n_active - n_in)
        return ops.logical_or(observed, new), observed

    def call(self, inputs, training=None):
        points, mask = prepare_cloud(inputs, self.point_dim)
        if mask is None:
            mask = ops.ones(ops.shape(points)[:2], dtype="bool")
        valid, frozen = self.particle_masks(mask)
        mean = masked_mean(points, mask, keepdims=True)
        std = masked_std(points, mask, keepdims=True)
        noise = keras.random.normal(ops.shape(points), seed=self.noise_seed, dtype=points.dtype)
        start = ops.where(ops.expand_dims(frozen, -1), points, mean + std * noise)
        z0 = self.embedding(start)
        context = self.network.compute_context(points, mask, batch_size=ops.shape(points)[0],
                                               training=training)
        z, stats = self.equilibrium(z0, context, mask=valid, frozen_mask=frozen,
                                    training=training)
        self._record_flow_stats(stats)
        out = self.embedding.project(z, self.point_dim)
        out = ops.where(ops.expand_dims(valid, -1), out, ops.zeros_like(out))
        return {"points": out, "mask": valid}

    def completion_loss(self, y, y_pred):
        """Per-sample ``MMD^2(output, complete) - entropy_weight * H(generated)``."""
        return self._completion_loss(*prepare_cloud(y, self.point_dim, name="y"), y_pred)

    def _completion_loss(self, target_points, target_mask, y_pred):
        mmd = mmd2(y_pred["points"], target_points, y_pred["mask"], target_mask)
        if self.entropy_weight == 0.0:
            return mmd
        return mmd - self.entropy_weight * kde_entropy(
            y_pred["points"], y_pred["mask"], self.entropy_bandwidth
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # The target is split and checked once, for the loss and the metric.
        target_points, target_mask = prepare_cloud(y, self.point_dim, name="y")
        per_sample = self._completion_loss(target_points, target_mask, y_pred)
        if sample_weight is not None:
            per_sample = per_sample * ops.cast(sample_weight, per_sample.dtype)
        loss = ops.mean(per_sample)
        self.chamfer_tracker.update_state(
            chamfer_distance(y_pred["points"], target_points, y_pred["mask"], target_mask)
        )
        self._update_solver_metrics()
        losses = self.losses  # regularisation losses, if any
        return loss + ops.sum(losses) if losses else loss

    def compile(self, optimizer="auto", **kwargs):
        """`keras.Model.compile`; ``"auto"`` is Adam (lr 1e-3, epsilon 1e-8).

        The loss is the completion loss (`completion_loss`), always.
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3, epsilon=1e-8)
        super().compile(optimizer=optimizer, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "point_dim": self.point_dim,
                "growth": self.growth,
                "entropy_weight": self.entropy_weight,
                "entropy_bandwidth": self.entropy_bandwidth,
                "seed": self.seed,
                **{k: getattr(self, k) for k in NETWORK_ARGS + SOLVER_ARGS},
            }
        )
        return config
