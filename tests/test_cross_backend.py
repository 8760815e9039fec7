"""The same weights give the same outputs on all three backends.

Models are built and saved (`.keras`) with the backend under test; each other
backend loads them in its own process and computes the same outputs.

Tolerances. One application of f: 1e-5 absolute (float32 kernels of XLA, oneDNN and
ATen round differently, ~1e-7 per op). After a solve: the solver stops at the first
iterate within its tolerance, and rounding decides which iterate that is on each
backend. With Anderson (the default) to rel MMD^2 1e-6, measured here up to 5.8e-3 on
logits of size ~1 (a 9-point cloud, TensorFlow vs PyTorch; other samples agreed to
1e-6): logits and outputs 2e-2 absolute, same argmax. (The Riesz Euler flow, which never
converges, amplifies the rounding differences instead: ~0.5 on logits of size ~43 for
the full MNIST configuration after 200 steps; that is why it is not the default.) A
wrong weight mapping gives O(1) differences already in f.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from ddeq_keras.models import DDEQClassifier, list_models
from ddeq_keras.models.configs import build_ddeq
from ddeq_keras.solvers import AndersonSolver
from model_checks import batch_for, outputs_of, tiny_model

pytestmark = pytest.mark.slow  # subprocesses with another backend each

OTHERS = [b for b in ("jax", "tensorflow", "torch") if b != BACKEND]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    import ddeq_keras  # registers the classes
    model = keras.saving.load_model(sys.argv[1])
    data = np.load(sys.argv[2])
    out = model({"points": data["points"], "mask": data["mask"]}, training=False)
    network = model.backbone.network
    context = network.compute_context(data["points"], data["mask"])
    fz = network(data["z"], context)
    np.savez(sys.argv[3], logits=keras.ops.convert_to_numpy(out),
             fz=keras.ops.convert_to_numpy(fz))
    """
)

# Loads every saved model and writes its outputs on the saved inputs.
ALL_SCRIPT = textwrap.dedent(
    """
    import glob, os, sys
    import numpy as np
    import keras
    import ddeq_keras
    out = {}
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.keras"))):
        name = os.path.basename(path)[:-6]
        data = np.load(os.path.join(sys.argv[1], name + ".npz"))
        model = keras.saving.load_model(path)
        y = model({"points": data["points"], "mask": data["mask"]}, training=False)
        out[name] = keras.ops.convert_to_numpy(y["points"] if isinstance(y, dict) else y)
    np.savez(sys.argv[2], **out)
    """
)


def _run(other, script, *args):
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("other", OTHERS)
def test_same_weights_same_outputs_on_every_backend(tmp_path, rng, other):
    model = build_ddeq(DDEQClassifier, dict(
        num_classes=4, point_dim=3, latent_dim=32, hidden_dim=8, bilinear_dim=8, num_heads=4,
        ff_dim=64, num_cross_blocks=2, solver=AndersonSolver(max_steps=30, tol=1e-6), seed=5))
    points = rng.normal(size=(3, 25, 3)).astype("float32")
    mask = np.arange(25)[None, :] < np.array([[25], [18], [9]])
    z = rng.normal(size=(3, 10, 32)).astype("float32")
    logits = to_numpy(model({"points": points, "mask": mask}, training=False))
    network = model.backbone.network
    fz = to_numpy(network(z, network.compute_context(points, mask)))
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "inputs.npz", points=points, mask=mask, z=z)
    _run(other, SCRIPT, tmp_path / "model.keras", tmp_path / "inputs.npz", tmp_path / "out.npz")
    result = np.load(tmp_path / "out.npz")
    print(json.dumps({"from": BACKEND, "to": other, "max_abs_f_diff":
                      float(np.abs(result["fz"] - fz).max()), "max_abs_logit_diff":
                      float(np.abs(result["logits"] - logits).max())}))
    np.testing.assert_allclose(result["fz"], fz, atol=1e-5)
    np.testing.assert_allclose(result["logits"], logits, atol=2e-2)
    np.testing.assert_array_equal(result["logits"].argmax(-1), logits.argmax(-1))


@pytest.mark.parametrize("other", OTHERS)
def test_every_registered_model_loads_on_another_backend_with_the_same_outputs(
        tmp_path, rng, other):
    expected = {}
    for name in list_models():
        model = tiny_model(name, **({"tol": 1e-6} if name.startswith("ddeq") else {}))
        x, _ = batch_for(model, name, rng)
        expected[name] = outputs_of(model, x)
        model.save(tmp_path / f"{name}.keras")
        np.savez(tmp_path / f"{name}.npz", **x)
    _run(other, ALL_SCRIPT, tmp_path, tmp_path / "out.npz")
    result = np.load(tmp_path / "out.npz")
    assert sorted(result.files) == sorted(expected)
    for name, value in expected.items():
        diff = float(np.abs(result[name] - value).max())
        print(json.dumps({"model": name, "from": BACKEND, "to": other, "max_abs_diff": diff}))
        # Baselines have no solver: float32 rounding only, 1e-4.
        atol = 2e-2 if name.startswith("ddeq") else 1e-4
        np.testing.assert_allclose(result[name], value, atol=atol, err_msg=name)
