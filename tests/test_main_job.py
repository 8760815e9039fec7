"""The main job (`python -m ddeq_keras`) on the backend under test, offline.

It loads the zoo's pretrained `ddeq_mnist` (committed under zoo/), so this also
checks that the shipped preset loads by name on every backend and classifies real
MNIST test clouds: at least 11 of the 12 bundled clouds right (measured: 12/12 on
TensorFlow, every probability of the predicted class >= 0.97); one error is allowed
because rounding differs across backends and the model errs on ~2% of test clouds.
Fine-tuning runs for 2 epochs here (30 by default): enough to check that it trains,
saves and reloads, not to measure it.
"""

import re

import numpy as np
import pytest

from ddeq_keras.presets import registry

pytestmark = pytest.mark.skipif(registry.shipped_folder("ddeq_mnist") is None,
                                reason="needs the zoo/ folder of a source checkout")


def test_main_job(tmp_path, capsys):
    from ddeq_keras.examples import main_job

    summary = main_job.main(["--output-dir", str(tmp_path / "out"), "--epochs", "2"])
    printed = capsys.readouterr().out
    assert summary["mnist_accuracy"] >= 11 / 12, printed
    # Every bundled cloud's row: its true and predicted digit, and converged flows
    # (the pretrained model converges on all 10,000 test clouds, see its card).
    rows = re.findall(r"^\s+\d+\s+\d+\s+(\d)\s+(\d)\s+[\d.]+\s+(\d+)\s+\S+\s+(True|False)\s+(\d)$",
                      printed, flags=re.M)
    assert len(rows) == 12, printed
    assert all(converged == "True" and result == "0" for *_, converged, result in rows)
    assert all(1 <= int(evals) <= 200 for _, _, evals, _, _ in rows)
    assert 0.0 <= summary["shapes_accuracy"] <= 1.0
    assert summary["reloaded_identical"]
    assert (summary["preset"] / "model.safetensors").is_file()
    assert summary["figure"].stat().st_size > 10_000


def test_bundled_data_is_what_the_job_says():
    from ddeq_keras.examples import main_job

    clouds, labels = main_job.bundled_mnist_clouds()
    assert len(clouds) == len(labels) == 12
    assert all(c.ndim == 2 and c.shape[1] == 2 and len(c) > 50 for c in clouds)
    assert set(labels) <= set(range(10))
    (train, train_labels), (test, test_labels) = main_job.bundled_shapes()
    assert (len(train), len(test)) == (21, 9)
    assert np.bincount(test_labels).tolist() == [3, 3, 3]
