"""Models: the DDEQ family and baselines for honest comparison."""

from ddeq_keras.models.configs import MODEL_CONFIGS, create_model, list_models  # noqa: F401
from ddeq_keras.models.ddeq import DDEQClassifier, DDEQCompleter, DDEQNetwork  # noqa: F401
from ddeq_keras.models.baselines import (  # noqa: F401
    PCNCompleter2D,
    PointNetClassifier,
    SetTransformerClassifier,
)
