"""Plumbing shared by the baseline models: inputs, checks, compile defaults.

Every baseline takes a point cloud as ``{"points": (batch, n, d), "mask":
(batch, n) bool}`` (the `ddeq_keras.datasets` convention) or as a plain
``(batch, n, d)`` tensor (every point valid), checks it with
`ddeq_keras.validation`, and compiles with sensible defaults when ``compile()``
is called without arguments (``"auto"``).
"""

import keras

from ddeq_keras.layers._common import ConfigFieldsMixin, serialize  # noqa: F401
from ddeq_keras.models.inputs import (  # noqa: F401
    check_batch,
    check_dtypes,
    points_shape,
    prepare_cloud,
    split_cloud,
)


def split_target(y, name="y"):
    """``(points, mask)`` of a target cloud (dict or tensor), for losses."""
    return split_cloud(y, name)


def resolve_optimizer(optimizer):
    """``"auto"`` -> ``Adam(learning_rate=1e-3)``; anything else unchanged."""
    if isinstance(optimizer, str) and optimizer == "auto":
        return keras.optimizers.Adam(learning_rate=1e-3)
    return optimizer


class BaselineModel(ConfigFieldsMixin, keras.Model):
    """Base of the baseline models: restores their custom ``compile`` on load.

    Subclasses override ``compile`` with ``"auto"`` defaults; Keras then skips
    the compile step of `keras.saving.load_model` unless ``compile_from_config``
    is overridden too, which is done here. Their configs are the attributes
    named in ``config_fields`` (see `ConfigFieldsMixin`).
    """

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __call__(self, inputs, *args, **kwargs):
        inputs = check_dtypes(inputs)  # before Keras converts them (see check_dtypes)
        return super().__call__(inputs, *args, **kwargs)

    # The compiled steps cannot inspect values: NumPy batches are checked on the
    # host first (NaN / out-of-range coordinates, empty masks), see `check_batch`.
    def predict(self, x, *args, **kwargs):
        check_batch(x, self.point_dim)
        return super().predict(x, *args, **kwargs)

    def predict_on_batch(self, x):
        check_batch(x, self.point_dim)
        return super().predict_on_batch(x)

    def evaluate(self, x=None, *args, **kwargs):
        check_batch(x, self.point_dim)
        return super().evaluate(x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        check_batch(x, self.point_dim)
        return super().fit(x, *args, **kwargs)


class ClassifierMixin:
    """``compile`` defaults and output shape of the classifiers (which have
    ``point_dim`` and ``num_classes``)."""

    def compute_output_shape(self, inputs_shape):
        shape = points_shape(inputs_shape, self.point_dim)
        return (shape[0], self.num_classes)

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Configures training; ``"auto"`` picks the defaults below.

        Args:
            optimizer: ``"auto"`` = ``Adam(learning_rate=1e-3)``, or any Keras
                optimizer.
            loss: ``"auto"`` = ``SparseCategoricalCrossentropy(from_logits=True)``
                (the model outputs logits; labels are integers), or any Keras
                loss.
            metrics: ``"auto"`` = ``[SparseCategoricalAccuracy("accuracy")]``,
                or any Keras metrics (None for none).
            **kwargs: other `keras.Model.compile` arguments.
        """
        if isinstance(loss, str) and loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if isinstance(metrics, str) and metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(
            optimizer=resolve_optimizer(optimizer), loss=loss, metrics=metrics, **kwargs
        )


def ensure_units(units, name):
    """A tuple of positive ints from a sequence (config lists come back as lists)."""
    units = tuple(int(u) for u in units)
    if any(u <= 0 for u in units):
        raise ValueError(f"`{name}` must hold positive widths; got {units}.")
    return units
