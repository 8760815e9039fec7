"""ddeq-keras: Distributional Deep Equilibrium Models for Keras 3.

Importing the package registers every class with Keras serialization (so
``keras.saving.load_model("model.keras")`` works after ``import ddeq_keras``)
and sets no Keras state (backend, dtype policy, seeds): choose the backend with
``KERAS_BACKEND=jax|tensorflow|torch``.
"""

__version__ = "0.1.0.dev0"

from ddeq_keras import layers, models, ops, preprocessing, presets, solvers
from ddeq_keras.layers import GradientFlowEquilibrium
from ddeq_keras.models import (
    DDEQBackbone,
    DDEQClassifier,
    DDEQCompleter,
    create_model,
    list_models,
)
from ddeq_keras.preprocessing import PointCloudPreprocessor
from ddeq_keras.presets import list_presets, publish
from ddeq_keras.presets import load_preset as from_pretrained

__all__ = [
    "DDEQBackbone",
    "DDEQClassifier",
    "DDEQCompleter",
    "GradientFlowEquilibrium",
    "PointCloudPreprocessor",
    "__version__",
    "create_model",
    "from_pretrained",
    "layers",
    "list_presets",
    "list_models",
    "models",
    "ops",
    "preprocessing",
    "presets",
    "publish",
    "solvers",
]
