"""`DDEQCompleter`: point-cloud completion with a DDEQ (method note, section 6)."""

import keras
from keras import ops

from ddeq_keras.layers import AffineCouplingEmbedding
from ddeq_keras.models.inputs import prepare_cloud
from ddeq_keras.models.task import Task
from ddeq_keras.ops import chamfer_distance, masked_mean, masked_std, mmd2


def kde_entropy(points, mask, bandwidth=1.0):
    """Gaussian-KDE estimate of the entropy of each sample's masked points, ``(batch,)``.

    ``H = -mean_i log(mean_j N(y_i - y_j; 0, bandwidth^2 I))`` over the points
    with ``mask`` True, both as evaluation points and as kernel centres (up to
    the constant of the Gaussian's normalisation). 0 for a sample with none.
    """
    diff = ops.expand_dims(points, 2) - ops.expand_dims(points, 1)
    k = ops.exp(-ops.sum(ops.square(diff), axis=-1) / (2.0 * bandwidth**2))
    w = ops.cast(mask, points.dtype)
    n = ops.maximum(ops.sum(w, axis=1, keepdims=True), 1.0)
    density = ops.sum(k * ops.expand_dims(w, 1), axis=2) / n
    log_density = ops.log(ops.maximum(density, 1e-30))
    return -ops.sum(log_density * w, axis=1) / ops.squeeze(n, 1)


@keras.saving.register_keras_serializable(package="ddeq_keras")
class DDEQCompleter(Task):
    """Completes a partial point cloud by the equilibrium of particles.

    A thin task on a `DDEQBackbone` (built with ``num_particles=None``). With a
    partial cloud of ``n`` valid points padded to length ``M``:
    - ``floor(growth * n)`` particles are active (capped at ``M``): the ``n``
      observed points sit in their own slots and stay frozen (``f`` copies them
      through), the others start from a Gaussian with the partial cloud's
      per-axis masked mean and std (in training fresh noise; in inference a
      fixed draw stored in the weights, ``inference_noise``, so completions are
      deterministic and the same on every backend);
    - points enter the latent space by zero-padding and one affine coupling
      layer (`AffineCouplingEmbedding`);
    - the backbone solves for the equilibrium conditioned on the partial cloud;
    - the output cloud is the first ``point_dim`` coordinates of ``z*``.

    The coupling's scale network exists only to match the authors' parameter
    count (1,185,008): the embedded points have ``z2 = 0``, so
    ``z2 * exp(s(z1))`` is 0 whatever ``s`` is, and it can never learn. It is
    kept (the authors' architecture, their weights can be ported) but frozen
    (non-trainable), so nothing claims to train it.

    Loss (``compile()`` default): masked Riesz ``MMD^2`` between the output and
    the complete cloud minus ``entropy_weight`` times a Gaussian-KDE entropy of
    the *generated* points (the observed ones do not move). The Chamfer
    distance (`ddeq_keras.ops.chamfer_distance` with ``chamfer_squared``, the
    definition the PCN baseline reports too) is logged as ``chamfer_distance``.

    Args:
        backbone: a `DDEQBackbone` with ``num_particles=None``.
        growth: active particles per observed point (1.275).
        entropy_weight: weight of the KDE entropy in the loss (1e-6).
        entropy_bandwidth: KDE bandwidth (1.0).
        chamfer_squared: Chamfer with squared distances (False: plain ones).
        noise_capacity: rows of the stored inference noise (longer clouds
            reuse it cyclically).
        preprocessor: an optional `PointCloudPreprocessor` (see `Task`).
        **kwargs: base `keras.Model` arguments.

    Inputs: ``{"points": (batch, M, point_dim), "mask": (batch, M)}`` (partial).
    Targets: ``{"points": (batch, K, point_dim), "mask": (batch, K)}`` (complete).
    Outputs: ``{"points": (batch, M, point_dim), "mask": (batch, M)`` active
    particles, ``"generated": (batch, M)`` active and not observed``}``.

    Example:
    >>> import numpy as np
    >>> from ddeq_keras.models import DDEQBackbone, DDEQCompleter
    >>> backbone = DDEQBackbone(point_dim=2, num_particles=None, num_cross_blocks=1,
    ...                         latent_dim=16, hidden_dim=4, bilinear_dim=4,
    ...                         num_heads=2, ff_dim=16)
    >>> model = DDEQCompleter(backbone)
    >>> out = model.predict([np.random.rand(20, 2)], verbose=0)
    >>> out["points"].shape, int(out["mask"].sum()), int(out["generated"].sum())
    ((1, 20, 2), 20, 0)
    """

    def __init__(self, backbone, growth=1.275, entropy_weight=1e-6, entropy_bandwidth=1.0,
                 chamfer_squared=False, noise_capacity=1024, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        if backbone.num_particles is not None:
            raise ValueError(
                "DDEQCompleter makes its own particles: build its backbone with "
                f"num_particles=None (got {backbone.num_particles})."
            )
        if not growth >= 1.0:
            raise ValueError(f"`growth` must be >= 1; got growth={growth!r}.")
        self.growth = float(growth)
        self.entropy_weight = float(entropy_weight)
        self.entropy_bandwidth = float(entropy_bandwidth)
        self.chamfer_squared = bool(chamfer_squared)
        self.noise_capacity = int(noise_capacity)
        latent = backbone.latent_dim
        self.embedding = AffineCouplingEmbedding(latent, hidden_units=latent // 2,
                                                 dtype=self.dtype_policy, name="embedding")
        # The scale network cannot learn (see the class docstring).
        self.embedding.scale_hidden.trainable = False
        self.embedding.scale_output.trainable = False
        self.noise_seed = keras.random.SeedGenerator(backbone.seed)
        self.chamfer_tracker = keras.metrics.Mean(name="chamfer_distance")

    def build(self, input_shape):
        points_shape = input_shape["points"] if isinstance(input_shape, dict) else input_shape
        points_shape = tuple(points_shape)
        z_shape = points_shape[:-1] + (self.backbone.latent_dim,)
        self.embedding.build(points_shape)
        if not self.backbone.built:  # a deserialized backbone comes built
            self.backbone.build({"points": points_shape, "particles": z_shape})
        self.inference_noise = self.add_weight(
            shape=(self.noise_capacity, self.point_dim),
            # N(0, 1) like the training noise (Keras's default stddev is 0.05).
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.backbone.seed),
            trainable=False,
            name="inference_noise",
        )
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

    def _noise(self, points, mask, training):
        if training:
            return keras.random.normal(ops.shape(points), seed=self.noise_seed,
                                       dtype=points.dtype)
        # The k-th free slot of a cloud takes row k of the stored draw, so the
        # new particles start from the same set of points whatever the order
        # of the observed points and the amount of padding.
        free = ops.logical_not(ops.cast(mask, "bool"))
        rank = ops.maximum(ops.cumsum(ops.cast(free, "int32"), axis=1) - 1, 0)
        rows = rank % self.noise_capacity
        return ops.cast(ops.take(self.inference_noise, rows, axis=0), points.dtype)

    def call(self, inputs, training=None):
        # Values are checked once, by the backbone (the model's boundary).
        points, mask = prepare_cloud(inputs, self.point_dim, check_values=False)
        if mask is None:
            mask = ops.ones(ops.shape(points)[:2], dtype="bool")
        valid, frozen = self.particle_masks(mask)
        mean = masked_mean(points, mask, keepdims=True)
        std = masked_std(points, mask, keepdims=True)
        start = ops.where(ops.expand_dims(frozen, -1), points,
                          mean + std * self._noise(points, mask, training))
        out = self.backbone({"points": points, "mask": mask, "particles": self.embedding(start),
                             "particle_mask": valid, "frozen_mask": frozen}, training=training)
        self._record_flow_stats(out["stats"])
        cloud = self.embedding.project(out["particles"], self.point_dim)
        cloud = ops.where(ops.expand_dims(valid, -1), cloud, ops.zeros_like(cloud))
        generated = ops.logical_and(valid, ops.logical_not(frozen))
        return {"points": cloud, "mask": valid, "generated": generated}

    def completion_loss(self, y, y_pred):
        """Per-sample ``MMD^2(output, complete) - entropy_weight * H(generated)``."""
        return self._completion_loss(*prepare_cloud(y, self.point_dim, name="y"), y_pred)

    def _completion_loss(self, target_points, target_mask, y_pred):
        mmd = mmd2(y_pred["points"], target_points, y_pred["mask"], target_mask)
        if self.entropy_weight == 0.0:
            return mmd
        return mmd - self.entropy_weight * kde_entropy(
            y_pred["points"], y_pred["generated"], self.entropy_bandwidth
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # The target is split and checked once, for the loss and the metric.
        target_points, target_mask = prepare_cloud(y, self.point_dim, name="y")
        per_sample = self._completion_loss(target_points, target_mask, y_pred)
        if sample_weight is not None:
            per_sample = per_sample * ops.cast(sample_weight, per_sample.dtype)
        loss = ops.mean(per_sample)
        self.chamfer_tracker.update_state(
            chamfer_distance(y_pred["points"], target_points, y_pred["mask"], target_mask,
                             squared=self.chamfer_squared)
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
        config.update({
            "growth": self.growth,
            "entropy_weight": self.entropy_weight,
            "entropy_bandwidth": self.entropy_bandwidth,
            "chamfer_squared": self.chamfer_squared,
            "noise_capacity": self.noise_capacity,
        })
        return config
