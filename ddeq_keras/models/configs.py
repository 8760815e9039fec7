"""Named model configurations (the authors' three DDEQs, plus the baselines).

`create_model("ddeq_mnist")` builds the architecture with fresh weights. (Loading
pretrained weights by name is the job of the model zoo, not of this registry.)
"""

from ddeq_keras.models.baselines import (
    PCNCompleter2D,
    PointNetClassifier,
    SetTransformerClassifier,
)
from ddeq_keras.models.ddeq import DDEQClassifier, DDEQCompleter

# name -> (class, constructor arguments, a typical input length for building)
MODEL_CONFIGS = {
    "ddeq_mnist": (DDEQClassifier, dict(num_classes=10, point_dim=2, num_cross_blocks=1), 351),
    "ddeq_modelnet40": (
        DDEQClassifier, dict(num_classes=40, point_dim=3, num_cross_blocks=3), 800
    ),
    "ddeq_mnist_completion": (DDEQCompleter, dict(point_dim=2, num_cross_blocks=3), 351),
    # Baselines, for comparisons on the same data.
    "pointnet_mnist": (PointNetClassifier, dict(num_classes=10, point_dim=2), 351),
    "pointnet_modelnet40": (PointNetClassifier, dict(num_classes=40, point_dim=3), 800),
    "set_transformer_mnist": (SetTransformerClassifier, dict(num_classes=10, point_dim=2), 351),
    "set_transformer_modelnet40": (
        SetTransformerClassifier, dict(num_classes=40, point_dim=3), 800
    ),
    "pcn_mnist_completion": (PCNCompleter2D, dict(point_dim=2), 351),
}


def list_models():
    """Names accepted by `create_model`."""
    return sorted(MODEL_CONFIGS)


def create_model(name, build=True, **overrides):
    """A model of a named configuration, with fresh weights.

    Args:
        name: one of `list_models()`.
        build: create the weights now (for a typical input length).
        **overrides: constructor arguments to change (e.g. ``max_steps=50``).

    Example:
    >>> model = create_model("ddeq_mnist")
    >>> model.count_params()
    """
    try:
        cls, config, length = MODEL_CONFIGS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; known: {list_models()}.") from None
    model = cls(**{**config, **overrides})
    if build:
        model.build({"points": (None, length, model.point_dim), "mask": (None, length)})
    return model
