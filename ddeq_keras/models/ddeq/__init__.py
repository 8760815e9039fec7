"""The DDEQ model family: the network f_theta, the backbone and the tasks."""

from ddeq_keras.models.ddeq.backbone import DDEQBackbone
from ddeq_keras.models.ddeq.classifier import DDEQClassifier
from ddeq_keras.models.ddeq.completer import DDEQCompleter
from ddeq_keras.models.ddeq.network import DDEQNetwork

__all__ = ["DDEQBackbone", "DDEQClassifier", "DDEQCompleter", "DDEQNetwork"]
