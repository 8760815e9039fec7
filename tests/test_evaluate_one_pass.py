"""`training.evaluate` takes its logs from its one prediction pass, not a second one.

Every batch of an evaluation runs the solver to convergence, so the logs (loss,
metrics, the solver's statistics) come from the same predictions as the report, not
from another `model.evaluate` pass. These tests check that they are the numbers
`model.evaluate` gives on the same batches. Tolerance: the same float32 computation,
compiled in one case and eager in the other, sums in another order: 1e-5 relative.
"""

import os
import sys

import keras
import numpy as np
import pytest

from conftest import to_numpy
from ddeq_keras.models import DDEQClassifier, DDEQCompleter
from ddeq_keras.models.configs import build_ddeq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from training.evaluate import _predict_all  # noqa: E402

TINY = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=32)


def _batches(x, y, size):
    n = len(x["points"])
    return [({k: v[i:i + size] for k, v in x.items()},
             y[i:i + size] if not isinstance(y, dict) else {k: v[i:i + size] for k, v in y.items()})
            for i in range(0, n, size)]


def _compare(model, x, y, size):
    expected = model.evaluate(x, y, batch_size=size, verbose=0, return_dict=True)
    _, outputs, _, _, logs = _predict_all(model, _batches(x, y, size))
    assert set(expected) <= set(logs)
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    return outputs, logs


def test_classifier_logs_match_evaluate(rng):
    keras.utils.set_random_seed(3)
    model = build_ddeq(DDEQClassifier, {"point_dim": 2, "num_classes": 3, "num_particles": 4,
                                        "num_cross_blocks": 1, "max_steps": 6, "seed": 1,
                                        **TINY})
    model.compile()
    x = {"points": rng.normal(size=(12, 10, 2)).astype("float32"),
         "mask": rng.uniform(size=(12, 10)) < 0.8}
    y = rng.integers(0, 3, 12)
    outputs, logs = _compare(model, x, y, size=5)  # a last batch of 2: weights matter
    assert np.concatenate(outputs).shape == (12, 3)
    assert 0 < logs["flow_steps"] <= 6 and np.isfinite(logs["loss"])


def test_completer_logs_match_evaluate(rng):
    keras.utils.set_random_seed(4)
    model = build_ddeq(DDEQCompleter, {"point_dim": 2, "num_particles": None,
                                       "num_cross_blocks": 1, "residual": "initial",
                                       "max_steps": 6, "seed": 1, **TINY})
    model.compile()
    angle = rng.uniform(0, 2 * np.pi, (8, 12))
    full = np.stack([np.cos(angle), np.sin(angle)], -1).astype("float32")
    keep = angle < np.pi
    x = {"points": np.where(keep[..., None], full, 0).astype("float32"), "mask": keep}
    y = {"points": full, "mask": np.ones((8, 12), bool)}
    outputs, logs = _compare(model, x, y, size=4)
    assert logs["chamfer_distance"] > 0 and 0 < logs["flow_steps"] <= 6
    assert to_numpy(outputs[0]["points"]).shape == (4, 12, 2)


def test_predict_on_batch_returns_the_solvers_statistics(rng):
    model = build_ddeq(DDEQClassifier, {"point_dim": 2, "num_classes": 3, "num_particles": 4,
                                        "num_cross_blocks": 1, "max_steps": 6, "seed": 1,
                                        **TINY})
    x = {"points": rng.normal(size=(3, 10, 2)).astype("float32"), "mask": np.ones((3, 10), bool)}
    logits, stats = model.predict_on_batch(x, return_stats=True)
    assert logits.shape == (3, 3)
    assert sorted(stats) == sorted(["num_steps", "num_evaluations", "mmd_initial", "mmd_final",
                                    "converged", "result"])
    assert all(np.asarray(v).shape == (3,) for v in stats.values())
    assert np.all((stats["num_steps"] >= 1) & (stats["num_steps"] <= 6))
    np.testing.assert_array_equal(stats["converged"], stats["result"] == 0)
    np.testing.assert_allclose(to_numpy(model.predict_on_batch(x)), logits, rtol=1e-6)


def test_baseline_completer_logs_match_evaluate(rng):
    # A model without a solver (PCN-2D): its logs come from the same predictions too.
    from ddeq_keras.models.baselines.pcn import PCNCompleter2D

    keras.utils.set_random_seed(5)
    model = PCNCompleter2D(encoder_units=((8, 8), (8, 8)), decoder_units=(8,),
                           num_output_points=7)
    model.compile()
    points = rng.normal(size=(6, 12, 2)).astype("float32")
    mask = np.arange(12)[None] < rng.integers(4, 12, (6, 1))
    x = {"points": np.where(mask[..., None], points, 0).astype("float32"), "mask": mask}
    y = {"points": points, "mask": np.ones((6, 12), bool)}
    outputs, logs = _compare(model, x, y, size=4)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    assert to_numpy(outputs[0]).shape == (4, 7, 2)
