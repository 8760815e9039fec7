"""The DDEQ models: parameter counts, symmetry, the completer, training, saving, the API."""

import numpy as np
import pytest
from keras import ops

import keras
from conftest import to_numpy
from ddeq_keras.examples.toy_equilibrium import make_sets
from ddeq_keras.models import DDEQBackbone, DDEQClassifier, DDEQCompleter, create_model
from ddeq_keras.models.configs import build_ddeq
from ddeq_keras.preprocessing import PointCloudPreprocessor
from ddeq_keras.solvers import AndersonSolver, EulerFlow, ImplicitAdjoint, PhantomAdjoint

# Small widths keep the tests fast; the structure is the full one.
TINY = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=32)
EULER = dict(solver="euler", eta=1.0, max_steps=8, check_every=4)


def classifier(num_classes=3, **kwargs):
    return build_ddeq(DDEQClassifier, {"point_dim": 2, "num_classes": num_classes,
                                       **TINY, **kwargs})


def completer(**kwargs):
    return build_ddeq(DDEQCompleter, {"point_dim": 2, "num_particles": None,
                                      "num_cross_blocks": 3, **TINY, **kwargs})


def _clouds(rng, batch=3, n=20, d=2, valid=(20, 12, 7)):
    points = rng.normal(size=(batch, n, d)).astype("float32")
    mask = np.arange(n)[None, :] < np.array(valid)[:, None]
    return {"points": np.where(mask[..., None], points, 0).astype("float32"), "mask": mask}


@pytest.mark.parametrize(
    "name,expected,frozen",
    [("ddeq_mnist", 773_114, 1280), ("ddeq_modelnet40", 1_173_544, 1280),
     # The completer's coupling scale network (8,320) cannot learn and is frozen
     # (see DDEQCompleter); it stores 1024 x 2 inference noise values.
     ("ddeq_mnist_completion", 1_185_008 - 8_320, 8_320 + 2_048)],
)
def test_parameter_counts_of_named_configurations(name, expected, frozen):
    model = create_model(name)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == expected
    # The authors' counts: trainable + the frozen coupling scale network.
    assert model.count_params() - trainable == frozen


def test_network_is_equivariant_in_the_particles(rng):
    model = classifier()
    x = _clouds(rng)
    model(x)
    f = model.backbone.network
    context = f.compute_context(x["points"], x["mask"])
    z = rng.normal(size=(3, 10, 16)).astype("float32")
    perm = rng.permutation(10)
    # One application of f, sums in another order: float32 rounding, 1e-5.
    np.testing.assert_allclose(to_numpy(f(z[:, perm], context)), to_numpy(f(z, context))[:, perm],
                               atol=1e-5)


def test_predictions_are_deterministic_in_inference(rng):
    for model in (classifier(), completer()):
        x = _clouds(rng)
        first, second = model.predict(x, verbose=0), model.predict(x, verbose=0)
        keras.tree.map_structure(np.testing.assert_array_equal, first, second)


@pytest.mark.parametrize("solver", ["euler", "anderson"])
def test_completer_keeps_observed_points_and_grows_the_cloud(rng, solver):
    model = completer(**(EULER if solver == "euler" else {"max_steps": 8}))
    x = _clouds(rng)
    out = model(x)
    points, mask = to_numpy(out["points"]), to_numpy(out["mask"])
    np.testing.assert_array_equal(points[x["mask"]], x["points"][x["mask"]])
    np.testing.assert_array_equal(mask.sum(1), np.minimum(np.floor(1.275 * np.array([20, 12, 7])), 20))
    np.testing.assert_array_equal(to_numpy(out["generated"]), mask & ~x["mask"])


def test_completer_entropy_is_over_the_generated_points_only(rng):
    model = completer(max_steps=4)
    x = _clouds(rng)
    out = model(x, training=False)
    loss = to_numpy(model.completion_loss(x, out))
    moved = dict(out)
    # Moving an observed point changes the MMD part only; its entropy term must not
    # change: recompute both parts by hand.
    from ddeq_keras.models.ddeq.completer import kde_entropy
    from ddeq_keras.ops import mmd2

    h = to_numpy(kde_entropy(out["points"], out["generated"]))
    mmd = to_numpy(mmd2(out["points"], x["points"], out["mask"], x["mask"]))
    np.testing.assert_allclose(loss, mmd - 1e-6 * h, rtol=1e-6, atol=1e-9)
    pts = to_numpy(out["points"]).copy()
    pts[:, 0] += 100.0  # an observed point far away
    moved["points"] = pts
    np.testing.assert_allclose(to_numpy(kde_entropy(moved["points"], out["generated"])), h,
                               rtol=1e-6)


def test_completer_and_pcn_report_the_same_chamfer_definition(rng):
    from ddeq_keras.models.baselines.pcn import masked_chamfer
    from ddeq_keras.ops import chamfer_distance

    a, b = _clouds(rng), _clouds(rng)
    pcn = to_numpy(masked_chamfer(b, a["points"]))  # PCN: every predicted point valid
    ours = to_numpy(chamfer_distance(a["points"], b["points"], None, b["mask"],
                                     squared=completer().chamfer_squared))
    np.testing.assert_allclose(ours, pcn, rtol=1e-6)


@pytest.mark.parametrize("solver", ["euler", "anderson"])
def test_classifier_fit_reduces_loss_and_logs_solver_metrics(solver):
    keras.utils.set_random_seed(1)
    x, y = make_sets(128, max_points=24, seed=0)
    model = classifier(num_classes=2, seed=1,
                       **(EULER if solver == "euler" else {"max_steps": 8}))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    if solver == "anderson":  # its flows converge inside `fit`; Euler's 8 steps do not
        assert history["flow_converged"][-1] > 0.5
    for key in ("flow_steps", "flow_rel_mmd", "flow_converged", "flow_non_finite",
                "flow_diverged"):
        assert key in history
    assert 0 < history["flow_steps"][-1] <= 8
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert {"loss", "accuracy", "flow_steps", "flow_rel_mmd", "flow_converged"} <= set(logs)


def test_completer_fit_reduces_loss():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, (64, 16))
    full = np.stack([np.cos(angle), np.sin(angle)], -1).astype("float32")
    keep = angle < np.pi  # the upper half is observed
    x = {"points": np.where(keep[..., None], full, 0).astype("float32"), "mask": keep}
    y = {"points": full, "mask": np.ones((64, 16), bool)}
    model = completer(seed=1, max_steps=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert "chamfer_distance" in history and "flow_steps" in history


def test_load_model_restores_the_optimizer_and_training_continues_identically(rng, tmp_path):
    # Save mid-training, load, train one more step: the same weights as the
    # uninterrupted run (same step, same data, no randomness: dropout off, fixed
    # inputs; the particle noise comes from the saved seed generator), to 1e-6.
    x, y = make_sets(32, max_points=16, seed=0)
    model = classifier(num_classes=2, seed=3, dropout=0.0, max_steps=6)
    model.compile()
    model.train_on_batch(x, y)
    model.save(tmp_path / "mid.keras")
    restored = keras.saving.load_model(tmp_path / "mid.keras")
    assert restored.compiled and restored.optimizer is not None
    assert int(restored.optimizer.iterations) == 1
    model.train_on_batch(x, y)
    restored.train_on_batch(x, y)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), atol=1e-6, err_msg=a.path)


def test_predict_on_raw_clouds_of_different_sizes(rng):
    model = classifier(preprocessor=PointCloudPreprocessor(2, num_points=24))
    clouds = [rng.normal(size=(n, 2)) * 5 + 3 for n in (7, 24, 40)]
    logits = model.predict(clouds, verbose=0)
    assert logits.shape == (3, 3)
    # The same as the packed, normalised batch given by hand.
    batch = model.preprocess(clouds)
    assert batch["points"].shape == (3, 24, 2) and batch["mask"].sum(1).tolist() == [7, 24, 24]
    np.testing.assert_allclose(to_numpy(model(batch, training=False)), logits, atol=1e-5)
    valid = batch["points"][1][batch["mask"][1]]
    np.testing.assert_allclose(valid.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(valid.std(0), 1, atol=1e-4)


@pytest.mark.parametrize(
    "clouds,match",
    [([np.zeros((0, 2))], r"Cloud 0 is empty"),
     ([np.ones((3, 2)), np.ones((3, 3))], r"Cloud 1 must have shape \(num_points, 2\)"),
     ([np.array([[0.0, np.nan]])], r"Cloud 0 has 1 point\(s\) with NaN"),
     ([np.array([["a", "b"]])], r"Cloud 0 must hold numbers")],
)
def test_preprocessor_names_the_bad_cloud(clouds, match):
    with pytest.raises(ValueError, match=match):
        PointCloudPreprocessor(2, num_points=8).pack(clouds)


def test_solver_and_adjoint_objects_are_arguments_and_round_trip():
    backbone = DDEQBackbone(point_dim=2, **TINY,
                            solver=AndersonSolver(memory=3, regularization=1e-3, tol=1e-5),
                            backward=ImplicitAdjoint(max_steps=7, method="anderson"))
    model = DDEQClassifier(backbone, num_classes=3)
    restored = DDEQClassifier.from_config(model.get_config())
    solver, adjoint = restored.backbone.solver, restored.backbone.backward
    assert isinstance(solver, AndersonSolver) and (solver.memory, solver.regularization,
                                                    solver.tol) == (3, 1e-3, 1e-5)
    assert isinstance(adjoint, ImplicitAdjoint) and (adjoint.max_steps, adjoint.method) == \
        (7, "anderson")
    euler = DDEQBackbone(point_dim=2, solver="euler", backward=PhantomAdjoint(steps=2))
    assert isinstance(euler.solver, EulerFlow) and euler.backward.steps == 2


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(solver="anderson", eta=5.0), r"'anderson' \(AndersonSolver\) does not take \['eta'\]"),
     (dict(solver="euler", memory=3), r"'euler' \(EulerFlow\) does not take \['memory'\]"),
     (dict(solver="newton"), r"`solver` must be one of"),
     (dict(backward="phantom", implicit_tol=1e-3), r"does not take \['tol'\]")],
)
def test_an_argument_the_solver_does_not_take_is_an_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("ddeq_mnist", build=False, **kwargs)


@pytest.mark.parametrize(
    "points,mask,match",
    [
        (np.zeros((2, 5, 3), "float32"), None, r"must have 2 features"),
        (np.zeros((2, 0, 2), "float32"), None, r"is empty"),
        (np.zeros((2, 5, 2), "float32"), np.array([[1, 1, 0, 0, 0], [0] * 5], bool),
         r"no valid entry for sample\(s\) \[1\]"),
        (np.full((2, 5, 2), np.nan, "float32"), None, r"NaN or infinite"),
    ],
)
def test_bad_input(points, mask, match):
    model = classifier()
    inputs = {"points": points} if mask is None else {"points": points, "mask": mask}
    with pytest.raises(ValueError, match=r"inputs\['(points|mask)'\].*" + match):
        model(inputs)


def test_completer_backbone_must_not_draw_particles():
    with pytest.raises(ValueError, match="num_particles=None"):
        DDEQCompleter(DDEQBackbone(point_dim=2, **TINY))


def test_save_to_preset_and_from_pretrained_give_the_same_predictions(rng, tmp_path):
    import json

    import ddeq_keras
    from ddeq_keras.presets import PresetError

    model = classifier(preprocessor=PointCloudPreprocessor(2, num_points=24),
                       class_names=["a", "b", "c"])
    clouds = [rng.normal(size=(n, 2)) for n in (9, 30)]
    expected = model.predict(clouds, verbose=0)
    model.save_to_preset(tmp_path / "preset")
    config = json.loads((tmp_path / "preset" / "config.json").read_text())
    assert config["class_names"] == ["a", "b", "c"] and config["point_dim"] == 2
    assert config["normalization"] == "std" and config["num_points"] == 24
    for loaded in (ddeq_keras.from_pretrained(str(tmp_path / "preset")),
                   DDEQClassifier.from_preset(str(tmp_path / "preset"))):
        assert isinstance(loaded, DDEQClassifier) and loaded.class_names == ["a", "b", "c"]
        np.testing.assert_array_equal(loaded.predict(clouds, verbose=0), expected)
    with pytest.raises(PresetError, match="not a DDEQCompleter"):
        DDEQCompleter.from_preset(str(tmp_path / "preset"))


def test_every_layer_of_a_built_task_is_built():
    # Keras runs `predict_on_batch` eagerly (re-tracing the solver at every call)
    # while any layer of the model is unbuilt; the preprocessor holds no state.
    for name in ("ddeq_mnist", "ddeq_mnist_completion"):
        model = create_model(name, latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2,
                             ff_dim=16)
        assert [layer.name for layer in model._flatten_layers() if not layer.built] == []


def test_implicit_adjoint_statistics_reach_the_fit_logs():
    keras.utils.set_random_seed(1)
    x, y = make_sets(64, max_points=16, seed=0)
    model = classifier(num_classes=2, seed=1, backward="implicit", implicit_max_steps=30,
                       max_steps=8)
    model.compile()
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    steps, fallback = history["adjoint_steps"], history["adjoint_fallback"]
    assert len(steps) == len(fallback) == 2
    assert all(0 < s <= 30 for s in steps) and all(0 <= f <= 1 for f in fallback)
    last = model.backbone.backward.report.last
    assert last["steps"].shape == (32,) and last["fallback"].dtype == bool


def test_inference_draws_come_from_the_training_noise_distribution():
    # Training starts from N(0, I) noise; the fixed inference draws must come from the
    # same distribution (Keras's RandomNormal defaults to stddev 0.05). 1280 and 2048
    # standard normal values: their std is within 0.1 of 1 (about 5 standard errors).
    particles = to_numpy(create_model("ddeq_mnist").backbone.inference_particles)
    noise = to_numpy(create_model("ddeq_mnist_completion").inference_noise)
    for draw in (particles, noise):
        assert abs(draw.std() - 1.0) < 0.1 and abs(draw.mean()) < 0.1
