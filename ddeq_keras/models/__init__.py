"""Models: the DDEQ family (backbone + tasks) and baselines for honest comparison."""

from ddeq_keras.models.baselines import (
    PCNCompleter2D,
    PointNetClassifier,
    SetTransformerClassifier,
)
from ddeq_keras.models.configs import MODEL_CONFIGS, create_model, list_models
from ddeq_keras.models.ddeq import DDEQBackbone, DDEQClassifier, DDEQCompleter, DDEQNetwork
from ddeq_keras.models.task import Task

__all__ = [
    "DDEQBackbone",
    "DDEQClassifier",
    "DDEQCompleter",
    "DDEQNetwork",
    "MODEL_CONFIGS",
    "PCNCompleter2D",
    "PointNetClassifier",
    "SetTransformerClassifier",
    "Task",
    "create_model",
    "list_models",
]
