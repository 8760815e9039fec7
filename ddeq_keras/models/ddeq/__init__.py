"""The DDEQ model family: the network f_theta, a classifier and a completer."""

from ddeq_keras.models.ddeq.classifier import DDEQClassifier  # noqa: F401
from ddeq_keras.models.ddeq.network import DDEQNetwork  # noqa: F401
from ddeq_keras.models.ddeq.completer import DDEQCompleter  # noqa: F401
