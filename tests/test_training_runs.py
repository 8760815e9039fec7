"""The training scripts end to end on tiny data, on the backend under test.

One tiny `ddeq_mnist` recipe run (2 epochs of 1 step of 4 clouds, a 16-wide DDEQ)
is shared: it runs in a subprocess, like the killed and the data-parallel runs
that are compared with it, and they share a JAX compilation cache (the same
compiled steps: only time is saved). The other tests load its preset.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

import keras  # noqa: E402

from conftest import BACKEND  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=16, max_steps=4)
RECIPE = dict(epochs=2, batch_size=4, num_points=40, checkpoint_every=1,
              monitor_split="test[:4]", decay_every=1)  # x0.2 after each epoch
STEPS, EVAL = 1, 4  # steps per epoch, clouds evaluated (one batch: one compiled shape)
SHAPES = ("disc", "line", "ring")


def write_idx(path, array):
    """An IDX file of uint8 data (the MNIST format)."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.tobytes())


def make_digits(count, seed):
    """Fake digits: 12 + label random bright pixels (no cloud of 1 point, whose std is 0)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = np.zeros((count, 28, 28), np.uint8)
    for image, label in zip(images, labels):
        pixels = rng.choice(28 * 28, size=12 + label, replace=False)
        image.flat[pixels] = rng.integers(1, 256, size=12 + label)
    return images, labels


def write_shapes(root, rng):
    """A point-set folder of 2-D discs, lines and rings: 4 + 4 + 4 train, 2 + 1 + 1 test."""
    for shape in SHAPES:
        for split in ("train", "test"):
            folder = root / shape / split
            folder.mkdir(parents=True)
            for i in range(4 if split == "train" else 1 + (shape == "disc")):
                n = int(rng.integers(20, 40))
                angle = rng.uniform(0, 2 * np.pi, n)
                radius = {"disc": np.sqrt(rng.uniform(0, 1, n)), "ring": np.ones(n),
                          "line": rng.uniform(-1, 1, n)}[shape]
                if shape == "line":
                    angle = np.zeros(n)
                points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
                np.save(folder / f"{i}.npy", (points + 0.02 * rng.normal(size=(n, 2))
                                              ).astype("float32"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    mnist = root / "manual" / "mnist"
    mnist.mkdir(parents=True)
    for prefix, count, seed in (("train", 12, 0), ("t10k", 4, 1)):
        images, labels = make_digits(count, seed)
        write_idx(mnist / f"{prefix}-images-idx3-ubyte", images)
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte", labels)
    write_shapes(root / "shapes", np.random.default_rng(2))
    return root


def train_args(work, *extra):
    sets = [f"model.{k}={v}" for k, v in MODEL.items()] + [f"{k}={v}" for k, v in RECIPE.items()]
    return ["--recipe", "ddeq_mnist", "--data-dir", str(work / "tfds"),
            "--manual-dir", str(work / "manual"), "--steps-per-epoch", str(STEPS),
            "--eval-limit", str(EVAL), "--verbose", "0",
            *[part for s in sets for part in ("--set", s)], *extra]


def run_module(work, module, args, **env):
    environment = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3",
                       JAX_COMPILATION_CACHE_DIR=str(work / "jax_cache"),
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **env)
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def reference(work):
    """The uninterrupted run (with plots): its folder."""
    run_dir = work / "reference"
    run_module(work, "training.train", train_args(work, "--run-dir", str(run_dir)))
    return run_dir


@pytest.fixture(scope="module")
def pretrained(reference):
    import ddeq_keras

    return ddeq_keras.from_pretrained(reference / "preset")


def eval_batches(work, builder="mnist_point_cloud", split=f"test[:{EVAL}]"):
    import ddeq_keras.datasets as dd

    data = dd.make_pipeline(builder, split, num_points=RECIPE["num_points"],
                            batch_size=RECIPE["batch_size"], data_dir=str(work / "tfds"))
    return [(keras.tree.map_structure(np.asarray, x), np.asarray(y)) for x, y in data]


def checkpoint_arrays(run_dir):
    from safetensors.numpy import load_file

    return load_file(str(run_dir / "checkpoint.safetensors"))


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_help_of_every_script(capsys):
    from training import evaluate, finetune, kill_resume_check, particle_spread, train

    for main in (train.main, evaluate.main, finetune.main, kill_resume_check.main,
                 particle_spread.main):
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_recipe_runs_end_to_end(work, reference, pretrained):
    from ddeq_keras.models import DDEQClassifier
    from ddeq_keras.presets import validate_preset
    from ddeq_keras.presets.format import read_metrics
    from training.checkpoint import read_progress

    progress = read_progress(reference / "checkpoint.safetensors")
    assert (progress["epoch"], progress["step"], progress["finished"]) == (2, 0, False)
    rows = read_rows(reference / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(int(r["steps_in_metrics"]) == STEPS for r in rows)
    assert all(np.isfinite(float(r["train_loss"])) for r in rows)
    # The rate each epoch trained with (not the next one's).
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([1e-3, 2e-4])
    for plot in ("curves.png", "confusion.png", "particles.png"):
        assert (reference / plot).stat().st_size > 1000, plot
    validate_preset(reference / "preset", require_metrics=True)
    records = {r["metric"]: r for r in read_metrics(reference / "preset")}
    assert records["accuracy"]["split"] == f"test[:{EVAL}]"
    assert records["accuracy"]["backend"] == BACKEND
    assert 0.0 <= records["accuracy"]["value"] <= 1.0
    assert isinstance(pretrained, DDEQClassifier)
    x, _ = eval_batches(work)[0]
    logits = keras.ops.convert_to_numpy(pretrained.predict_on_batch(x))
    assert logits.shape == (RECIPE["batch_size"], 10) and np.isfinite(logits).all()


def test_evaluate_metrics_match_a_direct_computation(work, reference, pretrained):
    from ddeq_keras.presets.format import read_metrics
    from training import evaluate

    out = work / "evaluation"
    evaluate.main(["--preset", str(reference / "preset"), "--dataset", "mnist_point_cloud",
                   "--split", f"test[:{EVAL}]", "--num-points", str(RECIPE["num_points"]),
                   "--batch-size", str(RECIPE["batch_size"]), "--data-dir",
                   str(work / "tfds"), "--out", str(out)])
    batches = eval_batches(work)
    logits = np.concatenate([keras.ops.convert_to_numpy(pretrained.predict_on_batch(x))
                             for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    predicted = logits.argmax(-1)
    confusion = np.zeros((10, 10), int)
    for true, guess in zip(labels, predicted):
        confusion[true, guess] += 1
    per_class = {str(c): float(np.mean(predicted[labels == c] == c)) for c in np.unique(labels)}

    report = json.loads((out / "evaluation.json").read_text())
    assert report["summary"]["clouds"] == EVAL == np.sum(report["confusion_matrix"])
    assert np.array_equal(report["confusion_matrix"], confusion)
    assert report["accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert report["per_class_accuracy"] == pytest.approx(per_class)
    assert report["mean_class_accuracy"] == pytest.approx(np.mean(list(per_class.values())))
    records = {r["metric"]: r["value"] for r in read_metrics(out)}
    assert records["accuracy"] == pytest.approx(np.mean(predicted == labels), abs=1e-6)
    assert {k[len("accuracy["):-1]: v for k, v in records.items()
            if k.startswith("accuracy[")} == pytest.approx(per_class, abs=1e-6)
    # The training run's own final evaluation saw the same weights and clouds.
    trained = json.loads((reference / "evaluation.json").read_text())
    assert trained["confusion_matrix"] == report["confusion_matrix"]


def learning_rate(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def test_finetune_phases_train_the_right_variables(reference):
    from training.finetune import enter_phase, load_model
    from training.recipes import Recipe

    model = load_model(reference / "preset", ["a", "b", "c"])
    recipe = Recipe(model="x", dataset="point_set_folder", learning_rate=1e-3)
    enter_phase(model, "frozen", recipe, 1e-4, 2)
    assert [v.path for v in model.trainable_variables] == [v.path for v in model.head.weights]
    assert learning_rate(model) == pytest.approx(1e-3)
    enter_phase(model, "unfrozen", recipe, 1e-4, 2)
    assert len(model.trainable_variables) == len(model.backbone.trainable_weights) + 2
    assert learning_rate(model) == pytest.approx(1e-4)


def test_finetune_to_new_classes(work, reference, pretrained):
    import ddeq_keras
    import ddeq_keras.datasets as dd
    from training import finetune

    run_dir = work / "finetune"
    report = finetune.main([
        "--preset", str(reference / "preset"), "--manual-dir", str(work / "shapes"),
        "--run-dir", str(run_dir), "--frozen-epochs", "1", "--epochs", "1",
        "--steps-per-epoch", str(STEPS), "--set", "batch_size=4",
        "--set", f"num_points={RECIPE['num_points']}", "--set", "checkpoint_every=1",
        "--no-plots", "--verbose", "0"])
    assert report["class_names"] == list(SHAPES)
    assert np.sum(report["confusion_matrix"]) == 4  # the test/ clouds
    rows = read_rows(run_dir / "metrics.csv")
    assert [(r["phase"], float(r["learning_rate"])) for r in rows] == [
        ("frozen", pytest.approx(1e-3)), ("unfrozen", pytest.approx(1e-4))]

    tuned = ddeq_keras.from_pretrained(run_dir / "preset")
    assert tuned.class_names == list(SHAPES) and tuned.num_classes == 3
    builder = dd.prepare("point_set_folder", data_dir=str(run_dir / "data"),
                                          options={"num_dims": 2})
    x, _ = eval_batches(work, builder, "test")[0]
    assert keras.ops.convert_to_numpy(tuned.predict_on_batch(x)).shape == (4, 3)
    before = {v.path: keras.ops.convert_to_numpy(v) for v in pretrained.backbone.weights}
    after = {v.path: keras.ops.convert_to_numpy(v) for v in tuned.backbone.weights}
    assert before.keys() == after.keys()
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # unfrozen: trained


def test_kill_and_resume_end_with_the_same_weights(work, reference):
    """A SIGKILL at a random checkpoint position; the resumed run must end bit-identical.

    (One kill keeps CI short; `training/kill_resume_check.py --kills 10` is the
    long form, run for the closing notes.)

    Measured on CPU: 0.0 difference on JAX, TensorFlow and PyTorch (the same
    compiled steps on the same batches from the same restored state), so no
    tolerance: any difference is a resume bug (a lost random state, another data
    order).

    This is also the determinism check (same seed, same backend, same data: the
    same weights after training, on CPU): the killed run starts from scratch in
    its own process with the recipe's seed, and every step it completed before
    the kill is in the checkpoint it is resumed from.
    """
    result = run_module(work, "training.kill_resume_check", [
        "--kills", "1", "--work-dir", str(work / "kill"), "--reference", str(reference),
        "--max-delay", "0.02", "--seed", "1", "--", *train_args(work, "--no-plots")])
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["passed"], report
    assert (report["kills"], report["resumes"]) == (1, 1)
    assert report["max_weight_difference"] == {"model": 0.0, "seed": 0.0, "optimizer": 0.0}


def test_time_budget_stops_and_a_larger_one_continues(work, reference):
    """A run stopped by its time budget says so, and resumes with a larger budget to the
    uninterrupted run's weights (no tolerance, as for a killed run: the same steps on the
    same batches from the same restored state)."""
    from training.checkpoint import read_progress

    run_dir = work / "budget"
    first = run_module(work, "training.train", train_args(
        work, "--run-dir", str(run_dir), "--no-plots", "--time-budget", "1e-9"))
    assert "Stopped by the time budget at epoch 2, step 0" in first.stdout
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert report["training"]["stopped_by_time_budget"] is True
    assert report["training"]["epochs_completed"] == 1  # the budget ran out in epoch 1
    assert read_progress(run_dir / "checkpoint.safetensors")["finished"] is True
    # The same budget again: nothing more to train.
    again = run_module(work, "training.train", train_args(
        work, "--run-dir", str(run_dir), "--no-plots", "--time-budget", "1e-9", "--resume"))
    assert "training continues" not in again.stdout
    assert json.loads((run_dir / "evaluation.json").read_text())["training"][
        "epochs_completed"] == 1
    more = run_module(work, "training.train", train_args(
        work, "--run-dir", str(run_dir), "--no-plots", "--time-budget", "60", "--resume"))
    assert "The time budget is now 60 min: training continues." in more.stdout
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert report["training"]["stopped_by_time_budget"] is False
    assert report["training"]["epochs_completed"] == 2
    resumed, uninterrupted = checkpoint_arrays(run_dir), checkpoint_arrays(reference)
    assert sorted(resumed) == sorted(uninterrupted)
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def test_data_parallel(work, reference):
    """Two simulated JAX devices vs one, on the same global batches.

    The seed states must match exactly (the same draws; JAX's partitionable
    random bits do not depend on the sharding). Weights differ by float32
    rounding: each device sums half the batch and the halves are added
    (another order than one sum), about 1e-7 relative per gradient; Adam turns
    the noise-level gradients of variables with none (attention key biases:
    softmax ignores them) into updates of up to ~1e-5 per step. Measured: 8e-6
    after these 2 steps, 3e-5 after 6. Tolerance 1e-4 (a wrong split or a
    missing all-reduce moves every weight by ~1e-3, Adam's step size).
    The data-parallel run skips the monitoring (a compile fewer; it changes no
    weight).
    """
    if BACKEND != "jax":
        from training import train

        with pytest.raises(SystemExit, match=f"JAX backend only.*{BACKEND} backend"):
            train.main(train_args(work, "--run-dir", str(work / "dp"), "--data-parallel"))
        assert not (work / "dp" / "checkpoint.safetensors").exists()
        return
    run_dir = work / "data_parallel"
    result = run_module(work, "training.train", train_args(
        work, "--run-dir", str(run_dir), "--no-plots", "--data-parallel", "--set",
        "monitor_split="), XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert "Data parallel over 2 devices" in result.stdout
    one, two = checkpoint_arrays(reference), checkpoint_arrays(run_dir)
    assert one.keys() == two.keys()
    for key in one:
        if key.startswith("seed/"):
            np.testing.assert_array_equal(one[key], two[key])
        elif key.startswith("model/"):
            np.testing.assert_allclose(one[key], two[key], rtol=0, atol=1e-4, err_msg=key)
    loss = [json.loads((d / "evaluation.json").read_text())["summary"]["loss"]
            for d in (reference, run_dir)]
    assert loss[1] == pytest.approx(loss[0], rel=1e-4)


def test_time_to_accuracy_records_and_plots_both_outcomes(work, reference):
    # The data `reference` prepared; a tiny model. Target 0: reached at the
    # first evaluation after a step. Target above 1 with a budget of a few
    # milliseconds: not reached, stopped by the budget after one step.
    tiny = [part for k, v in MODEL.items() if k != "max_steps"  # the solvers' own
            for part in ("--set", f"{k}={v}")]
    common = ["run", "--data-dir", str(work / "tfds"), "--batch-size", "4", "--num-points",
              "40", "--test", "4", "--eval-every", "0", *tiny]
    runs = {}
    for solver, target, budget in (("anderson", 0.0, 10.0), ("euler", 1.5, 1e-4)):
        out = work / f"tta_{solver}.json"
        run_module(work, "training.time_to_accuracy", [
            *common, "--solver", solver, "--target", str(target), "--budget", str(budget),
            "--flow-steps", "3", "--out", str(out)])
        runs[solver] = json.loads(out.read_text())
    reached, spent = runs["anderson"], runs["euler"]
    assert reached["finished"] == "target reached" and reached["reached_at_step"] == 1
    assert [p["steps"] for p in reached["curve"]] == [0, 1]
    assert spent["finished"].startswith("budget") and spent["reached_at_s"] is None
    assert spent["solver_settings"]["max_steps"] == 3
    assert spent["model_overrides"]["latent_dim"] == MODEL["latent_dim"]
    for point in reached["curve"] + spent["curve"]:
        assert 0.0 <= point["accuracy"] <= 1.0 and point["train_s"] >= 0.0
    png = work / "tta.png"
    result = run_module(work, "training.time_to_accuracy", [
        "plot", str(work / "tta_anderson.json"), str(work / "tta_euler.json"), "--png", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "not reached in 0.0001 min" in result.stdout


def test_input_only_chamfer_is_the_chamfer_of_the_partial_input():
    """The completion reference: 0 for a complete input, else the Chamfer distance of the
    input itself (the same op: float32 rounding only, 1e-6)."""
    from ddeq_keras.ops import chamfer_distance
    from training.evaluate import input_only_chamfer

    rng = np.random.default_rng(3)
    complete = rng.normal(size=(2, 10, 2)).astype("float32")
    full = np.ones((2, 10), bool)
    partial = full.copy()
    partial[:, 6:] = False
    target = {"points": complete, "mask": full}
    assert input_only_chamfer([({"points": complete, "mask": full}, target)]) == 0.0
    expected = keras.ops.convert_to_numpy(
        chamfer_distance(complete, complete, partial, full, squared=False))
    batches = [({"points": complete, "mask": partial}, target)] * 2
    assert input_only_chamfer(batches) == pytest.approx(float(np.mean(expected)), abs=1e-6)
    assert float(np.mean(expected)) > 0


def test_completion_spread_of_added_and_removed_points():
    """0 when every added point coincides (the collapse it exists to show), the RMS distance
    from the centroid otherwise; the removed points are those of the complete cloud not in
    the partial input. Exact arithmetic on small floats (1e-6)."""
    from training.evaluate import completion_spread

    complete = np.array([[[0, 0], [1, 0], [4, 0], [4, 2]]], "float32")
    full = np.ones((1, 4), bool)
    partial = np.array([[True, True, False, False]])  # removed: (4, 0) and (4, 2)
    x = {"points": complete, "mask": partial}
    y = {"points": complete, "mask": full}
    collapsed = {"points": np.array([[[0, 0], [1, 0], [3, 1], [3, 1]]], "float32"),
                 "mask": full, "generated": ~partial}
    spread = {"points": np.array([[[0, 0], [1, 0], [3, 0], [3, 4]]], "float32"),
              "mask": full, "generated": ~partial}
    generated, missing = completion_spread([x], [collapsed], [y])
    assert generated == 0.0 and missing == pytest.approx(1.0, abs=1e-6)
    generated, _ = completion_spread([x, x], [spread, collapsed], [y, y])
    assert generated == pytest.approx((2.0 + 0.0) / 2, abs=1e-6)
    # A model that makes a whole new cloud (PCN) has no added points to score.
    assert completion_spread([x], [complete], [y]) == (None, pytest.approx(1.0, abs=1e-6))


def test_completion_plot_of_a_padded_and_of_an_unpadded_completer(tmp_path):
    """``completions.png`` for a DDEQ completer (a padded ``{"points", "mask"}`` cloud) and
    for PCN-2D (a bare ``(B, N, 2)`` array, every point valid: its plot once crashed on
    it); a completion of any other shape is refused by name."""
    from ddeq_keras.models.baselines.pcn import PCNCompleter2D
    from training.plots import _as_cloud, plot_completions

    rng = np.random.default_rng(0)
    points = rng.normal(size=(2, 12, 2)).astype("float32")
    mask = np.arange(12)[None] < np.array([[8], [5]])
    x = {"points": np.where(mask[..., None], points, 0).astype("float32"), "mask": mask}
    y = {"points": points, "mask": np.ones((2, 12), bool)}
    pcn = PCNCompleter2D(encoder_units=((8, 8), (8, 8)), decoder_units=(8,),
                         num_output_points=7)
    out = pcn.predict_on_batch(x)
    cloud, valid = _as_cloud(keras.ops.convert_to_numpy(out))
    assert cloud.shape == (2, 7, 2) and valid.shape == (2, 7) and valid.all()
    cloud, valid = _as_cloud(x)
    np.testing.assert_array_equal(valid, mask)

    class PaddedCompleter:  # a completer's output format, without a model to train
        def predict_on_batch(self, batch):
            return {"points": batch["points"] + 1.0, "mask": batch["mask"]}

    for name, model in (("pcn", pcn), ("padded", PaddedCompleter())):
        png = plot_completions(model, x, y, tmp_path / f"{name}.png", count=2)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"shape \(2, 7\)"):
        _as_cloud(np.zeros((2, 7)))
