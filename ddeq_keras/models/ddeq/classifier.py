"""`DDEQClassifier`: point-cloud classification with a DDEQ."""

import keras

from ddeq_keras.layers import MaskedMaxPooling
from ddeq_keras.models.task import Task


@keras.saving.register_keras_serializable(package="ddeq_keras")
class DDEQClassifier(Task):
    """Classifies point clouds by the equilibrium of particles conditioned on them.

    A thin task on a `DDEQBackbone`: the backbone's equilibrium particles
    ``z*`` go through a masked max-pool and a Dense layer to the logits.

    Args:
        backbone: a `DDEQBackbone` (with ``num_particles`` set).
        num_classes: number of classes.
        class_names: optional names of the classes (kept in the config and
            in presets).
        preprocessor: an optional `PointCloudPreprocessor` (see `Task`).
        **kwargs: base `keras.Model` arguments.

    Inputs: ``{"points": (batch, n, point_dim), "mask": (batch, n) bool}``
    (preprocessed), or raw clouds in `predict` / `evaluate` / `fit`.
    Outputs: logits ``(batch, num_classes)``.

    Example:
    >>> import numpy as np
    >>> from ddeq_keras.models import DDEQBackbone, DDEQClassifier
    >>> from ddeq_keras.preprocessing import PointCloudPreprocessor
    >>> backbone = DDEQBackbone(point_dim=2, latent_dim=16, hidden_dim=4,
    ...                         bilinear_dim=4, num_heads=2, ff_dim=16)
    >>> model = DDEQClassifier(backbone, num_classes=3,
    ...                        preprocessor=PointCloudPreprocessor(2, num_points=40))
    >>> model.compile()  # Adam 1e-3, sparse cross-entropy on logits, accuracy
    >>> model.predict([np.random.rand(25, 2), np.random.rand(60, 2)], verbose=0).shape
    (2, 3)
    """

    def __init__(self, backbone, num_classes, class_names=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        if backbone.num_particles is None:
            raise ValueError("DDEQClassifier needs a backbone with `num_particles` set.")
        self.num_classes = int(num_classes)
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(
                f"`class_names` has {len(class_names)} names for {self.num_classes} classes."
            )
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.pool = MaskedMaxPooling(name="pool", dtype=self.dtype_policy)
        self.head = keras.layers.Dense(self.num_classes, name="head", dtype=self.dtype_policy)

    def build(self, input_shape):
        points_shape = input_shape["points"] if isinstance(input_shape, dict) else input_shape
        if not self.backbone.built:  # a deserialized backbone comes built
            self.backbone.build(input_shape)
        z_shape = (tuple(points_shape)[0], self.backbone.num_particles, self.backbone.latent_dim)
        self.pool.build(z_shape)
        self.head.build((z_shape[0], z_shape[-1]))
        self.built = True

    def call(self, inputs, training=None):
        out = self.backbone(inputs, training=training)
        self._record_flow_stats(out["stats"])
        return self.head(self.pool(out["particles"]))

    def with_new_head(self, num_classes, class_names=None):
        """A classifier for other classes on this one's backbone (for fine-tuning).

        The new classifier shares this one's backbone (its weights, layers and
        random state: not a copy) and preprocessor, and gets a freshly
        initialised head; it is built and not compiled. Freeze the backbone
        with ``new.backbone.trainable = False`` to train the head alone.

        Args:
            num_classes: number of new classes.
            class_names: optional names of the new classes.

        Returns:
            A built `DDEQClassifier`.

        Example:
        >>> from ddeq_keras.models import create_model
        >>> digits = create_model("ddeq_mnist", latent_dim=16, hidden_dim=4,
        ...                       bilinear_dim=4, num_heads=2, ff_dim=16)
        >>> shapes = digits.with_new_head(3, class_names=["disc", "ring", "square"])
        >>> shapes.backbone is digits.backbone, shapes.head.units, shapes.class_names[0]
        (True, 3, 'disc')
        """
        # Every other option of this task (name, dtype policy, ...) carries over.
        config = {k: v for k, v in self.get_config().items()
                  if k not in ("backbone", "preprocessor")}
        config.update(num_classes=num_classes, class_names=class_names)
        model = type(self)(self.backbone, preprocessor=self.preprocessor, **config)
        build_config = self.get_build_config()  # the input shapes this one was built for
        if build_config:
            model.build_from_config(build_config)
        return model

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
        config.update({"num_classes": self.num_classes, "class_names": self.class_names})
        return config
