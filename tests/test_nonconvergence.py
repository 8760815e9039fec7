"""`predict` never hides samples that did not converge: warn (default), raise or ignore.

One model, one compiled shape: a completer whose solver cannot converge (one
step, tolerance 0) on partial clouds, while a cloud with every slot observed
has all its particles frozen (``MMD^2 = 0``: converged at the start), so the
same model shows both. The messages of every result code are checked on the
reporting function itself (a trained network rarely diverges on demand), and
the ``flow_*`` logs on given statistics.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from ddeq_keras.models import DDEQCompleter, create_model
from ddeq_keras.preprocessing import PointCloudPreprocessor
from ddeq_keras.solvers import (
    AndersonSolver,
    EulerFlow,
    NonConvergenceError,
    NonConvergenceWarning,
    report_nonconvergence,
)
from model_checks import DDEQ_TINY

BATCH, LENGTH = 3, 12


@pytest.fixture(scope="module")
def stuck():
    keras.utils.set_random_seed(0)
    model = create_model("ddeq_mnist_completion", build=False,
                         # One cross block (of 3): half the compile time, same API.
                         **{**DDEQ_TINY, "max_steps": 1, "tol": 0.0, "num_cross_blocks": 1},
                         preprocessor=PointCloudPreprocessor(2, num_points=LENGTH))
    # Built here: an unbuilt model's first predict builds it by an eager call.
    model.build({"points": (None, LENGTH, 2), "mask": (None, LENGTH)})
    return model


def _batch(n=(12, 7, 5)):
    """Clouds of ``n`` points: a full one (12) converges at once; the others get
    ``floor(1.275 n) - n = 1`` particle to place and cannot."""
    rng = np.random.default_rng(0)
    mask = np.arange(LENGTH)[None, :] < np.array(n)[:, None]
    points = np.where(mask[..., None], rng.normal(size=(BATCH, LENGTH, 2)), 0)
    return {"points": points.astype("float32"), "mask": mask}


def _warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in caught if issubclass(w.category, NonConvergenceWarning)]


def test_predict_warns_by_default_with_count_code_and_remedy(stuck):
    assert stuck.on_nonconvergence == "warn"
    out, caught = _warnings(lambda: stuck.predict(_batch(), verbose=0))
    # The outputs alone, as from keras.Model.predict.
    assert sorted(out) == ["generated", "mask", "points"]
    assert out["points"].shape == (BATCH, LENGTH, 2)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "2 of 3 samples did not converge in predict (sample(s) [1, 2])" in message
    assert "2 with result code 1 (max_steps)" in message
    assert "raise the solver's `max_steps`" in message and "max_steps=1" in message
    assert "on_nonconvergence='ignore'" in message
    assert caught[0].filename == __file__  # points at the caller's line


def test_converged_samples_are_silent(stuck):
    full = _batch(n=(12, 12, 12))
    _, caught = _warnings(lambda: stuck.predict(full, verbose=0, on_nonconvergence="raise"))
    assert caught == []


def test_raise_and_ignore_per_call_and_as_the_attribute(stuck):
    x = _batch()
    with pytest.raises(NonConvergenceError, match=r"2 of 3 samples did not converge"):
        stuck.predict(x, verbose=0, on_nonconvergence="raise")
    _, caught = _warnings(lambda: stuck.predict(x, verbose=0, on_nonconvergence="ignore"))
    assert caught == []
    stuck.on_nonconvergence = "raise"
    try:
        with pytest.raises(NonConvergenceError, match=r"in predict_on_batch"):
            stuck.predict_on_batch(x)
        clouds = [np.random.default_rng(0).normal(size=(5, 2))] * BATCH
        with pytest.raises(NonConvergenceError):  # raw clouds take the same path
            stuck.predict(clouds, verbose=0)
    finally:
        stuck.on_nonconvergence = "warn"


def test_policy_is_validated_configured_and_saved(stuck, tmp_path):
    with pytest.raises(ValueError, match=r"`on_nonconvergence` must be one of"):
        stuck.on_nonconvergence = "loud"
    with pytest.raises(ValueError, match=r"`on_nonconvergence` must be one of"):
        stuck.predict(_batch(), on_nonconvergence="never")
    with pytest.raises(ValueError, match=r"`on_nonconvergence` must be one of"):
        create_model("ddeq_mnist", build=False, on_nonconvergence=True)
    model = create_model("ddeq_mnist", build=False, **DDEQ_TINY, on_nonconvergence="raise")
    assert model.on_nonconvergence == "raise"
    assert model.get_config()["on_nonconvergence"] == "raise"
    assert type(model).from_config(model.get_config()).on_nonconvergence == "raise"
    stuck.on_nonconvergence = "ignore"
    try:
        stuck.save(tmp_path / "m.keras")
        restored = keras.saving.load_model(tmp_path / "m.keras")
        assert isinstance(restored, DDEQCompleter) and restored.on_nonconvergence == "ignore"
    finally:
        stuck.on_nonconvergence = "warn"


def test_the_message_of_every_result_code():
    euler = EulerFlow(eta=5.0, max_steps=200, tol=1e-4)
    with pytest.raises(NonConvergenceError) as error:
        report_nonconvergence([0, 1, 2, 3, 3, 0], "raise", solver=euler)
    message = str(error.value)
    assert message.startswith("4 of 6 samples did not converge in predict (sample(s) [1, 2, 3, 4])")
    assert "1 with result code 1 (max_steps): used all max_steps=200 updates" in message
    assert "1 with result code 2 (non_finite): the map produced NaN/inf" in message
    assert "2 with result code 3 (diverged): MMD^2 rose 5 iterations in a row to over " \
           "100.0x its lowest value: lower the step size (`eta`)" in message
    assert report_nonconvergence(np.zeros(4, "int32"), "raise", AndersonSolver()) is None
    many = report_nonconvergence(np.ones(25, "int32"), "ignore")
    assert "(sample(s) [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] and 15 more)" in many


def test_the_logs_count_diverged_samples_and_skip_nan_mmd(stuck):
    # What `compute_loss` folds into the fit / evaluate logs, from given statistics.
    stuck._record_flow_stats({
        "num_steps": ops.convert_to_tensor([3, 5, 1, 2], "int32"),
        "mmd_initial": ops.convert_to_tensor([1.0, 1.0, float("nan"), 2.0]),
        "mmd_final": ops.convert_to_tensor([0.5, 0.25, float("nan"), 1.0]),
        "converged": ops.convert_to_tensor([False, False, False, False]),
        "result": ops.convert_to_tensor([1, 3, 2, 3], "int32"),
    })
    stuck._update_solver_metrics()
    assert float(stuck.flow_diverged_tracker.result()) == 0.5
    assert float(stuck.flow_non_finite_tracker.result()) == 0.25
    # The NaN sample is left out of the mean rather than turning it into NaN.
    np.testing.assert_allclose(float(stuck.flow_rel_mmd_tracker.result()),
                               (0.5 + 0.25 + 0.5) / 3, rtol=1e-6)
