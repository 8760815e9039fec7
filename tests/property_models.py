"""The models the input properties run on (built once per process) and their profiles.

Building and compiling are the expensive part (JAX compiles the predict step
once per input shape and dtype, ~7 s for a tiny DDEQ on this CPU), so every
model is built once, and the properties draw their shapes from a few padded
lengths and batch sizes per profile; set sizes vary freely below the padded
length, the batch is topped up with filler clouds.

Profiles (``DDEQ_PROPERTY_PROFILE``, default ``"ci"``): ``"ci"`` is the small
one the pytest run uses (one padded shape per model for most properties,
derandomised so CI is reproducible); ``"large"`` is the one of
``python -m tests.property_check`` (more shapes, dtypes and thousands of
examples).
"""

import functools
import os
from dataclasses import dataclass

import keras
import numpy as np

from ddeq_keras.models import list_models
from ddeq_keras.models.task import Task
from ddeq_keras.preprocessing import PointCloudPreprocessor
from model_checks import tiny_model

MODELS = list_models()
DDEQ = [n for n in MODELS if n.startswith("ddeq")]


@dataclass(frozen=True)
class Profile:
    """Shapes and example counts of one profile.

    Attributes:
        lengths: padded lengths (set sizes vary from 1 up to them).
        rows: batch sizes the model sees (clouds + filler).
        large_length: the padded length of the "several thousand points" sets.
        dtypes: ``(points, mask)`` dtype pairs the batches are given in (a
            few pairs, not every combination: JAX compiles each one).
        examples: hypothesis examples per property and model.
        derandomize: fixed examples (CI) or fresh ones every run.
        extra_shapes: run the properties that need more padded shapes
            (padding amount, thousands of points). Each shape costs a model
            seconds of JAX compilation (~7 s for a DDEQ); CI leaves them to
            the standard checks (padding amount, eager) and to the large
            profile.
    """

    lengths: tuple
    rows: tuple
    large_length: int
    dtypes: tuple
    examples: dict
    derandomize: bool
    extra_shapes: bool


PROFILES = {
    "ci": Profile(
        lengths=(24,), rows=(6,), large_length=1024,
        dtypes=(("float32", "bool"),),
        examples={"valid": 3, "padding": 2, "large": 1, "invalid": 12, "raw": 2,
                  "raw_invalid": 8, "preprocessor": 8, "scale": 8},
        derandomize=True, extra_shapes=False),
    "large": Profile(
        lengths=(8, 24, 64, 256), rows=(2, 6, 16), large_length=4096,
        dtypes=(("float32", "bool"), ("float64", "int32"), ("int32", "float32"),
                ("float16", "bool")),
        examples={"valid": 250, "padding": 80, "large": 15, "invalid": 200, "raw": 100,
                  "raw_invalid": 150, "preprocessor": 800, "scale": 400},
        derandomize=False, extra_shapes=True),
}


def profile_name():
    return os.environ.get("DDEQ_PROPERTY_PROFILE", "ci")


def profile():
    name = profile_name()
    if name not in PROFILES:
        raise ValueError(f"DDEQ_PROPERTY_PROFILE must be one of {sorted(PROFILES)}; got {name!r}.")
    return PROFILES[name]


# The DDEQ solves of the properties must reach their equilibrium: the order of
# the points changes float32 rounding only, and a converged solve keeps that at
# rounding level, while a solve that runs out of budget returns whichever
# iterate rounding made best (measured: up to 0.2 apart). 50 Anderson steps
# converge on these tiny models (12 steps left ~40% of the samples short).
DDEQ_SOLVER = dict(max_steps=50)


def raw_length():
    """The preprocessor's padded length: the first profile length (no new shape)."""
    return profile().lengths[0]


@functools.lru_cache(maxsize=None)
def property_model(name):
    """A registered model at tiny widths, built once per process (seeded weights).

    DDEQ tasks get a preprocessor padding to `raw_length` (so raw clouds reuse
    a compiled shape) and ``on_nonconvergence="ignore"`` (the properties read
    the result codes themselves).
    """
    keras.utils.set_random_seed(0)
    overrides = {}
    if name.startswith("ddeq"):
        d = 3 if "modelnet" in name else 2
        overrides = dict(DDEQ_SOLVER, on_nonconvergence="ignore",
                         preprocessor=PointCloudPreprocessor(d, num_points=raw_length()))
    if "pointnet" in name:
        overrides["dropout"] = 0.0
    model = tiny_model(name, **overrides)
    length = raw_length()
    model.build({"points": (None, length, model.point_dim), "mask": (None, length)})
    return model


def predict(model, x):
    """``(outputs, result codes or None)`` of `predict` on one batch, as NumPy.

    Tasks return their solver's per-sample statistics with the outputs
    (`Task.predict_step`), which `keras.Model.predict` hands back as they are.
    Everything goes through `predict` (not `predict_on_batch`, which JAX
    compiles separately), so each shape compiles once.
    """
    rows = len(x["points"]) if isinstance(x, dict) else len(x)
    if isinstance(model, Task):
        outputs, stats = keras.Model.predict(model, x, batch_size=rows, verbose=0)
        return outputs, np.asarray(stats["result"])
    return model.predict(x, batch_size=rows, verbose=0), None
