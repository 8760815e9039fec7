"""The same weights give the same outputs on all three backends.

The model is built and saved (`.keras`) with the backend under test; each of the
other backends loads it in its own process and computes, for the same inputs, one
application of the network f on fixed particles and the model's logits.

Tolerances. One application of f: 1e-5 absolute (float32 kernels of XLA, oneDNN and
ATen round differently, ~1e-7 per op). Logits after the flow: 1e-2 absolute, same
argmax. The Riesz Euler flow is not smooth at its equilibrium and amplifies those
rounding differences: measured here up to 4e-3 on logits of size ~17 after 8 steps
at eta = 1, and ~0.5 on logits of size ~43 for the full MNIST configuration (200
steps at eta = 5, untrained weights). A wrong weight mapping gives O(1) differences
already in f.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import BACKEND, to_numpy
from ddeq_keras.models import DDEQClassifier

OTHERS = [b for b in ("jax", "tensorflow", "torch") if b != BACKEND]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    import ddeq_keras.models  # registers the classes
    model = keras.saving.load_model(sys.argv[1])
    data = np.load(sys.argv[2])
    out = model({"points": data["points"], "mask": data["mask"]})
    context = model.network.compute_context(data["points"], data["mask"])
    fz = model.network(data["z"], context)
    np.savez(sys.argv[3], logits=keras.ops.convert_to_numpy(out),
             fz=keras.ops.convert_to_numpy(fz))
    """
)


@pytest.mark.parametrize("other", OTHERS)
def test_same_weights_same_outputs_on_every_backend(tmp_path, rng, other):
    model = DDEQClassifier(num_classes=4, point_dim=3, latent_dim=32, hidden_dim=8,
                           bilinear_dim=8, num_heads=4, ff_dim=64, num_cross_blocks=2,
                           eta=1.0, max_steps=8, check_every=4, seed=5)
    points = rng.normal(size=(3, 25, 3)).astype("float32")
    mask = np.arange(25)[None, :] < np.array([[25], [18], [9]])
    z = rng.normal(size=(3, 10, 32)).astype("float32")
    logits = to_numpy(model({"points": points, "mask": mask}))
    fz = to_numpy(model.network(z, model.network.compute_context(points, mask)))
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "inputs.npz", points=points, mask=mask, z=z)
    name = other
    env = dict(os.environ, KERAS_BACKEND=name, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "model.keras"),
         str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    other = np.load(tmp_path / "out.npz")
    print(json.dumps({"from": BACKEND, "to": name, "max_abs_f_diff":
                      float(np.abs(other["fz"] - fz).max()), "max_abs_logit_diff":
                      float(np.abs(other["logits"] - logits).max())}))
    np.testing.assert_allclose(other["fz"], fz, atol=1e-5)
    np.testing.assert_allclose(other["logits"], logits, atol=1e-2)
    np.testing.assert_array_equal(other["logits"].argmax(-1), logits.argmax(-1))
