"""The standard checks (`model_checks`) on every registered model, every backward.

Build, save/load round trip, gradients reaching every trainable variable in
`fit` and in a custom loop with ``training`` unset, invariance to point order
and padding; and, for the DDEQ models, that training and inference compute
the same function. Cross-backend loading is in `test_cross_backend.py`.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from ddeq_keras.models import list_models
from model_checks import (
    assert_every_variable_learns,
    batch_for,
    custom_loop_gradients,
    fit_step_changes_every_variable,
    is_completion,
    outputs_of,
    permuted_and_padded,
    tiny_model,
)

DDEQ = [n for n in list_models() if n.startswith("ddeq")]
BASELINES = [n for n in list_models() if not n.startswith("ddeq")]
# (name, backward) for every model: the baselines have no backward to choose.
CASES = [(n, b) for n in DDEQ for b in ("phantom", "implicit")] + \
    [pytest.param(n, "unrolled", marks=pytest.mark.slow) for n in DDEQ] + \
    [(n, None) for n in BASELINES]


def _model(name, backward, **overrides):
    if backward is not None:
        overrides["backward"] = backward
        if backward == "unrolled":
            # Backpropagation through every step: memory and compile time grow with
            # the steps and the blocks, so two steps through one cross block.
            overrides.update(max_steps=2, num_cross_blocks=1)
    return tiny_model(name, **overrides)


@pytest.mark.parametrize("name,backward", CASES)
def test_gradients_reach_every_variable_in_fit_and_in_a_custom_loop(rng, name, backward):
    model = _model(name, backward)
    x, y = batch_for(model, name, rng)
    moved = fit_step_changes_every_variable(model, name, x, y)
    assert_every_variable_learns(name, moved)
    assert_every_variable_learns(name, custom_loop_gradients(model, name, x, y))


@pytest.mark.parametrize("name", DDEQ)
def test_training_and_inference_compute_the_same_function(rng, name):
    # Same initial particles, dropout off: the layer's value is z* in both modes,
    # to the solver's tolerance (the training pass runs the same solve plus a
    # phantom step whose value is discarded): 1e-5.
    model = tiny_model(name, dropout=0.0)
    x, y = batch_for(model, name, rng)
    model(x)
    backbone = model.backbone
    z0 = rng.normal(size=(3, 10, backbone.latent_dim)).astype("float32")
    inputs = {**x, "particles": z0} if not is_completion(name) else None
    if inputs is None:  # the completer's own particles: compare whole task outputs
        out_train = model(x, training=True)["points"]
        noise_free = model(x, training=False)["points"]
        observed = x["mask"]
        np.testing.assert_array_equal(to_numpy(out_train)[observed], x["points"][observed])
        np.testing.assert_array_equal(to_numpy(noise_free)[observed], x["points"][observed])
        inputs = {"points": x["points"], "mask": x["mask"],
                  "particles": model.embedding(x["points"]), "particle_mask": x["mask"]}
    train = to_numpy(backbone(inputs, training=True)["particles"])
    infer = to_numpy(backbone(inputs, training=False)["particles"])
    np.testing.assert_allclose(train, infer, atol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_outputs_invariant_to_point_order_and_padding(rng, name):
    model = tiny_model(name, **({"dropout": 0.0} if "pointnet" in name else {}))
    x, _ = batch_for(model, name, rng)
    reference = outputs_of(model, x)
    permuted, padded = permuted_and_padded(x, rng)
    # Sums over points in another order change float32 rounding, which the solver
    # can amplify a little: 1e-4 absolute + 1e-4 relative (a permutation or padding
    # bug moves outputs by O(1)).
    if is_completion(name) and name.startswith("ddeq"):
        # Output slots follow input slots: compare each cloud's active points as a set.
        def as_sets(model_input):
            out = model(model_input, training=False)
            pts, m = to_numpy(out["points"]), to_numpy(out["mask"])
            return [np.sort(p[k].round(3), axis=0) for p, k in zip(pts, m)]

        for other in (permuted, padded):
            for a, b in zip(as_sets(other), as_sets(x)):
                np.testing.assert_allclose(a, b, atol=2e-3)
        return
    np.testing.assert_allclose(outputs_of(model, permuted), reference, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(outputs_of(model, padded), reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list_models())
def test_save_load_round_trip(rng, tmp_path, name):
    import ddeq_keras  # noqa: F401  (registers every class)

    model = tiny_model(name)
    x, y = batch_for(model, name, rng)
    before = outputs_of(model, x)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert type(restored) is type(model)
    np.testing.assert_array_equal(outputs_of(restored, x), before)


def test_import_ddeq_keras_is_enough_to_load_a_saved_model(tmp_path):
    model = tiny_model("ddeq_mnist")
    model.build({"points": (None, 20, 2), "mask": (None, 20)})
    model.save(tmp_path / "model.keras")
    script = textwrap.dedent("""
        import sys, keras, ddeq_keras
        model = keras.saving.load_model(sys.argv[1])
        print(type(model).__name__)
    """)
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.keras")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("DDEQClassifier")
