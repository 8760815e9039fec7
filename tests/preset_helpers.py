"""Small models, inputs and metric records for the preset tests.

The models come from public entry points only (`create_model` with flat overrides, a
plain `keras.Sequential`), so these tests do not depend on model internals.
"""

import keras
import numpy as np

from ddeq_keras.models import create_model

# A tiny DDEQ: small widths, few solver steps; only arguments every solver takes.
TINY_DDEQ = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=16,
                 max_steps=8)


def tiny_ddeq(seed=3):
    """A built tiny `ddeq_mnist` classifier (2-D points, 10 classes)."""
    keras.utils.set_random_seed(seed)
    return create_model("ddeq_mnist", **TINY_DDEQ)


def ddeq_inputs(seed=0, batch=3, n=20):
    """Padded 2-D clouds with a mask (valid lengths 20, 12, 7)."""
    rng = np.random.default_rng(seed)
    mask = np.arange(n)[None, :] < np.array([n, 12, 7][:batch])[:, None]
    points = np.where(mask[..., None], rng.normal(size=(batch, n, 2)), 0).astype("float32")
    return {"points": points, "mask": mask}


def tiny_sequential(seed=1):
    """A small built Sequential with trainable, non-trainable and seed-state variables."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((3,)), keras.layers.Dense(8, activation="relu", name="dense"),
        keras.layers.Dropout(0.2, name="dropout"),
        keras.layers.BatchNormalization(name="batch_normalization"),
        keras.layers.Dense(2, name="dense_1"),
    ], name="tiny_sequential")  # named layers: fixed variable paths in any process
    # Non-default statistics, so that a lost non-trainable variable would show.
    batchnorm = model.layers[2]
    batchnorm.moving_mean.assign(np.linspace(-1, 1, 8).astype("float32"))
    batchnorm.moving_variance.assign(np.linspace(0.5, 2, 8).astype("float32"))
    return model


def sequential_inputs(seed=0):
    return np.random.default_rng(seed).normal(size=(5, 3)).astype("float32")


def outputs(model, inputs):
    """The model's inference outputs as NumPy (any nesting)."""
    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(inputs, training=False))


def variables(model):
    """Key -> NumPy value of every variable (keys as stored in presets)."""
    from ddeq_keras.presets.weights import variable_keys

    return {key: keras.ops.convert_to_numpy(v) for key, v in
            zip(variable_keys(model), model.variables)}


def metrics(value=0.75, backend=None):
    """One well-formed metric record."""
    return [dict(dataset="synthetic_rings", split="test", metric="accuracy", value=value,
                 backend=backend or keras.config.backend(), hardware="CPU (test)",
                 date="2026-12-01", command="python -m training.evaluate --preset test")]
