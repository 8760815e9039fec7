"""ddeq-keras: Distributional Deep Equilibrium Models for Keras 3.

Importing the package sets no Keras state (backend, dtype policy, seeds):
choose the backend with ``KERAS_BACKEND=jax|tensorflow|torch``.
"""

__version__ = "0.1.0.dev0"

from ddeq_keras import ops  # noqa: F401
