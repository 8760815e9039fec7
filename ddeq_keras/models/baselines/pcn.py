"""PCN point-cloud completion (Yuan et al., 3DV 2018) adapted to 2-D, masked."""

import keras
from keras import ops

from ddeq_keras.models.baselines import _base
from ddeq_keras.ops import chamfer_distance, masked_max

CHAMFER_LOSSES = {"chamfer": False, "chamfer_squared": True}


def masked_chamfer(y_true, y_pred, squared=False):
    """Chamfer distance per sample between a prediction and a (masked) target.

    Args:
        y_true: the complete cloud, ``{"points": (batch, m, d), "mask":
            (batch, m)}`` or a ``(batch, m, d)`` tensor (all points valid).
        y_pred: predicted points ``(batch, m_out, d)``, all valid.
        squared: squared Euclidean distances (False: plain distances, as in
            PCN's Chamfer distance).

    Returns:
        ``(batch,)``: ``mean_i min_j d(p_i, t_j) + mean_j min_i d(p_i, t_j)``
        over the valid target points (see `ddeq_keras.ops.chamfer_distance`).
    """
    points, mask = _base.split_target(y_true)
    points = ops.cast(points, y_pred.dtype)
    if mask is not None:
        mask = ops.cast(mask, "bool")
    return chamfer_distance(y_pred, points, None, mask, squared=squared)


@keras.saving.register_keras_serializable(package="ddeq_keras")
class ChamferDistance(keras.metrics.Mean):
    """Mean Chamfer distance between predicted and (masked) target clouds.

    ``y_true`` may be a cloud dict ``{"points", "mask"}`` (padded target
    points are ignored) or a plain tensor; ``y_pred`` is ``(batch, m, d)``.

    Args:
        squared: use squared Euclidean distances.
        name: metric name.
        dtype: metric dtype.

    Example:
    >>> from ddeq_keras.models.baselines import ChamferDistance
    >>> m = ChamferDistance()
    >>> t = np.array([[[0.0, 0.0], [1.0, 0.0], [9.0, 9.0]]], "float32")
    >>> t_mask = np.array([[True, True, False]])  # the third target point is padding
    >>> pred = np.array([[[0.0, 0.0], [1.0, 1.0]]], "float32")
    >>> m.update_state({"points": t, "mask": t_mask}, pred)
    >>> float(m.result())  # (0 + 1) / 2 both ways
    1.0
    """

    def __init__(self, squared=False, name="chamfer_distance", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.squared = bool(squared)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = masked_chamfer(y_true, y_pred, squared=self.squared)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {"squared": self.squared, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="ddeq_keras")
class PCNCompleter2D(_base.BaselineModel):
    """PCN completion network (Yuan et al., 2018), adapted to 2-D clouds.

    Encoder (two PointNet stages, masked)::

        f = shared MLP encoder_units[0] (128 ReLU, 256 linear)     per point
        g = masked max pool of f
        h = shared MLP encoder_units[1] (512 ReLU, 1024 linear) of [f, g]
        v = masked max pool of h                                  (global feature)

    Decoder (PCN's coarse branch)::

        MLP decoder_units (1024 ReLU, 1024 ReLU) -> Dense(num_output_points * d)
        -> reshape (batch, num_output_points, d)

    Only the coarse output is produced: PCN's folding stage refines every
    coarse point with a 2-D grid patch of a *surface*, which has no natural
    counterpart for 2-D digit clouds, whose outputs are already dense enough
    at a few hundred points (the DDEQ authors score the 2-D adaptation by
    Chamfer distance only). Every output point is valid: the output has no
    mask.

    Masks are honoured: padded input points never enter a max pool, so the
    output does not depend on padding or on the order of the points.

    Training: the default loss (``compile()`` with ``loss="auto"``) is the
    Chamfer distance (plain Euclidean distances, as in PCN) between the
    output and the *valid* points of the complete cloud, averaged over the
    batch; the default metric ``chamfer_distance`` reports the same
    quantity. Targets are the complete clouds as ``{"points", "mask"}``
    dicts (as made by ``make_pipeline(task="completion")``) or plain
    tensors.

    Parameter count (measured): with the defaults (``point_dim=2``,
    ``num_output_points=351``) 3,640,126, all trainable (encoder 821,376,
    decoder 2,818,750).

    Args:
        num_output_points: number of predicted points ``M_out`` (351: the
            largest MNIST point cloud).
        point_dim: coordinates per point (2).
        encoder_units: the two PointNet stages' widths; the last layer of
            each stage is linear (as in PCN).
        decoder_units: hidden widths of the decoder MLP (ReLU).
        **kwargs: `keras.Model` arguments (``name``, ``dtype``...).

    Example (tiny widths, to run fast):
    >>> from ddeq_keras.models import PCNCompleter2D
    >>> model = PCNCompleter2D(num_output_points=40, encoder_units=((8, 16), (16, 32)),
    ...                        decoder_units=(32,))
    >>> model.compile()  # Adam(1e-3), masked Chamfer loss and metric
    >>> partial = {"points": np.random.randn(2, 30, 2).astype("float32"),
    ...            "mask": np.arange(30)[None] < np.array([[30], [12]])}
    >>> model.predict(partial, verbose=0).shape
    (2, 40, 2)
    >>> complete = {"points": np.random.randn(2, 50, 2).astype("float32"),
    ...             "mask": np.ones((2, 50), bool)}
    >>> sorted(model.fit(partial, complete, epochs=1, verbose=0).history)
    ['chamfer_distance', 'loss']
    """

    config_fields = ("num_output_points", "point_dim", "encoder_units", "decoder_units")

    def __init__(
        self,
        num_output_points=351,
        point_dim=2,
        encoder_units=((128, 256), (512, 1024)),
        decoder_units=(1024, 1024),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_output_points = int(num_output_points)
        if self.num_output_points <= 0:
            raise ValueError(
                f"`num_output_points` must be positive; received {num_output_points}."
            )
        self.point_dim = int(point_dim)
        if len(encoder_units) != 2:
            raise ValueError(
                "`encoder_units` must hold the widths of the two PointNet stages; "
                f"received {encoder_units}."
            )
        self.encoder_units = tuple(
            _base.ensure_units(u, "encoder_units") for u in encoder_units
        )
        if any(len(u) == 0 for u in self.encoder_units):
            raise ValueError("each stage of `encoder_units` needs at least one width.")
        self.decoder_units = _base.ensure_units(decoder_units, "decoder_units")
        dtype = self.dtype_policy

        def mlp(units, prefix):
            return [
                keras.layers.Dense(
                    u,
                    activation="relu" if i < len(units) - 1 else None,
                    dtype=dtype,
                    name=f"{prefix}{i}",
                )
                for i, u in enumerate(units)
            ]

        self.stage1 = mlp(self.encoder_units[0], "encoder1_")
        self.stage2 = mlp(self.encoder_units[1], "encoder2_")
        self.decoder = [
            keras.layers.Dense(u, activation="relu", dtype=dtype, name=f"decoder{i}")
            for i, u in enumerate(self.decoder_units)
        ]
        self.coarse = keras.layers.Dense(
            self.num_output_points * self.point_dim, dtype=dtype, name="coarse"
        )
        self.chamfer_metric = ChamferDistance(name="chamfer_distance")
        self._completion_loss = None
        self._loss_spec = None
        self._metrics_spec = None
        self._track_chamfer = False

    # ------------------------------------------------------------------ model
    def build(self, inputs_shape):
        shape = _base.points_shape(inputs_shape, self.point_dim)
        for layer in self.stage1:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        shape = shape[:-1] + (2 * shape[-1],)
        for layer in self.stage2:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        shape = (shape[0], shape[-1])
        for layer in self.decoder:
            layer.build(shape)
            shape = (shape[0], layer.units)
        self.coarse.build(shape)

    def call(self, inputs, training=None):
        points, mask = _base.prepare_cloud(inputs, self.point_dim)
        f = points
        for layer in self.stage1:
            f = layer(f)
        g = masked_max(f, mask, axis=1, keepdims=True)
        h = ops.concatenate([f, ops.broadcast_to(g, ops.shape(f))], axis=-1)
        for layer in self.stage2:
            h = layer(h)
        v = masked_max(h, mask, axis=1)
        for layer in self.decoder:
            v = layer(v)
        out = self.coarse(v)
        return ops.reshape(out, (-1, self.num_output_points, self.point_dim))

    def compute_output_shape(self, inputs_shape):
        shape = _base.points_shape(inputs_shape, self.point_dim)
        return (shape[0], self.num_output_points, self.point_dim)

    # --------------------------------------------------------------- training
    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Configures training; ``"auto"`` picks the defaults below.

        Args:
            optimizer: ``"auto"`` = ``Adam(learning_rate=1e-3)``, or any Keras
                optimizer.
            loss: ``"auto"`` or ``"chamfer"`` = the masked Chamfer distance with
                plain Euclidean distances; ``"chamfer_squared"`` = with squared
                distances; or a callable ``loss(y_true, y_pred)`` returning a
                scalar or one value per sample, where ``y_true`` is the target
                exactly as given to ``fit`` (a ``{"points", "mask"}`` dict).
                Keras loss objects cannot be used: they cannot see the target's
                mask.
            metrics: ``"auto"`` = ``["chamfer_distance"]`` (the masked Chamfer
                distance, with the loss's distance), None for none, or a list
                that may hold ``"chamfer_distance"`` and other Keras metrics;
                the other metrics receive the target's points tensor only.
            **kwargs: other `keras.Model.compile` arguments (``loss_weights``
                is not supported).
        """
        if isinstance(loss, str):
            name = "chamfer" if loss == "auto" else loss
            if name not in CHAMFER_LOSSES:
                raise ValueError(
                    f"Unknown `loss` {loss!r}: use 'auto', 'chamfer', "
                    "'chamfer_squared' or a callable loss(y_true, y_pred)."
                )
            squared = CHAMFER_LOSSES[name]

            def completion_loss(y_true, y_pred):
                return masked_chamfer(y_true, y_pred, squared=squared)

        elif loss is None:
            completion_loss, squared = None, False
        elif callable(loss) and not isinstance(loss, keras.losses.Loss):
            completion_loss, squared = loss, False
        else:
            raise ValueError(
                "`loss` must be 'auto', 'chamfer', 'chamfer_squared', None or a "
                "callable loss(y_true, y_pred) that handles the target dict; "
                f"received {loss!r}."
            )
        if isinstance(metrics, str) and metrics == "auto":
            track, other = True, None
        elif metrics is None:
            track, other = False, None
        else:
            metrics = list(metrics)
            track = any(
                (isinstance(m, str) and m == "chamfer_distance")
                or isinstance(m, ChamferDistance)
                for m in metrics
            )
            other = [
                m
                for m in metrics
                if not (
                    (isinstance(m, str) and m == "chamfer_distance")
                    or isinstance(m, ChamferDistance)
                )
            ] or None
        if kwargs.pop("loss_weights", None) is not None:
            raise ValueError("`loss_weights` is not supported: the model has one output.")
        super().compile(
            optimizer=_base.resolve_optimizer(optimizer),
            loss=None,
            metrics=other,
            **kwargs,
        )
        self._completion_loss = completion_loss
        # Stored serialized: a list of Metric objects assigned to a built
        # model would be tracked as new state (which Keras forbids).
        self._loss_spec = _base.serialize(loss)
        self._metrics_spec = _base.serialize(metrics)
        self._track_chamfer = track
        self.chamfer_metric.squared = squared
        self.chamfer_metric.reset_state()

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:
            config["loss"] = self._loss_spec
            config["metrics"] = self._metrics_spec
            config.pop("loss_weights", None)
        return config

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del x, training
        losses = []
        if self._completion_loss is not None:
            value = ops.convert_to_tensor(self._completion_loss(y, y_pred))
            if len(value.shape) and sample_weight is not None:
                value = value * ops.cast(ops.reshape(sample_weight, (-1,)), value.dtype)
            losses.append(ops.mean(value))
        for loss in self.losses:
            losses.append(ops.sum(ops.cast(loss, "float32")))
        if not losses:
            raise ValueError("No loss to compute: compile with a `loss`.")
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        del x
        if self._track_chamfer:
            self.chamfer_metric.update_state(y, y_pred, sample_weight)
        if self._compile_metrics is not None:
            points, _ = _base.split_target(y)
            self._compile_metrics.update_state(points, y_pred, sample_weight)
        return self.get_metrics_result()

    @property
    def metrics(self):
        metrics = super().metrics
        if not getattr(self, "_track_chamfer", False):
            metrics = [m for m in metrics if m is not self.chamfer_metric]
        return metrics
