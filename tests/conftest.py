"""Shared test fixtures.

Every test runs on the backend named by ``KERAS_BACKEND``; `tests/run_all_backends.py`
runs the whole suite once per backend, each in its own process.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

BACKEND = keras.config.backend()


@pytest.fixture(autouse=True)
def _seed():
    # Tests are entry points: this is where global Keras state may be set.
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture
def float64():
    """Lets a test compute in float64 on every backend (JAX needs x64 switched on)."""
    if BACKEND == "jax":
        import jax

        with jax.enable_x64(True):
            yield "float64"
    else:
        yield "float64"
