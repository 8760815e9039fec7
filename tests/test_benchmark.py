"""`training/benchmark.py` (and `training/bench/`) on the current backend, at smoke sizes.

One module-scoped smoke run (every section, one model, one timed repeat) feeds most
tests; it takes most of this file's time because each configuration is compiled.
The tests check what is recorded, not how fast it is: they run torch single-threaded,
since torch's CPU threads slow down tens of times when another process holds a core.
"""

import contextlib
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from training import benchmark  # noqa: E402
from training.bench import core, worker  # noqa: E402
from training.bench.data import pack_npz, unpack_npz  # noqa: E402

BACKEND = keras.config.backend()


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@contextlib.contextmanager
def single_threaded():
    """One CPU thread for torch, here and in the benchmark's subprocesses."""
    old_env = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    old_threads = None
    if BACKEND == "torch":
        import torch

        old_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old_env
        if old_threads is not None:
            import torch

            torch.set_num_threads(old_threads)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    path = tmp_path_factory.mktemp("benchmark") / "smoke.json"
    with single_threaded():
        returned = benchmark.main(
            ["--smoke", "--models", "ddeq_mnist", "--repeats", "1", "--jit-timeout", "5",
             "--output", str(path)]
        )
    with open(path) as f:
        saved = json.load(f)
    return returned, saved, path


pytestmark = pytest.mark.slow  # the smoke run: minutes of compiling and subprocesses


def test_run_writes_every_section(smoke):
    returned, saved, _ = smoke
    assert set(saved["sections"]) == {"train", "infer", "jit", "memory", "solvers"}
    assert set(returned["sections"]) == set(saved["sections"])
    meta = saved["meta"]
    assert meta["backend"] == BACKEND
    assert meta["keras_version"] == keras.__version__
    assert meta["smoke"] is True and meta["device"] and meta["date"]
    assert positive(meta["wall_s"])
    for key in ("cpu_busy_at_start", "cpu_busy_at_end"):
        assert meta[key] is None or 0.0 <= meta[key] <= 1.0
    for name in ("train", "infer", "jit", "memory", "solvers"):
        assert "error" not in saved["sections"][name], saved["sections"][name]


def test_train_modes_and_ratio(smoke):
    train = smoke[1]["sections"]["train"]
    entry = train["models"]["ddeq_mnist"]
    assert entry["num_points"] == 24
    default, reference = entry["modes"]["default"], entry["modes"]["reference"]
    for mode in (default, reference):
        assert positive(mode["step_s"]) and positive(mode["first_call_s"])
        assert mode["steps_timed"] == 1 and mode["step_s"] == pytest.approx(mode["times_s"][0])
        assert mode["config"]["max_steps"] == 3 and mode["config"]["tol"] == 0.0
    assert default["config"]["precompute_context"] is True
    assert reference["config"]["precompute_context"] is False
    assert reference["config"]["check_every"] == 100
    assert reference["config"]["eta"] == 5.0 and reference["config"]["solver"] == "euler"
    assert entry["ratio_reference_over_default"] == pytest.approx(
        reference["step_s"] / default["step_s"])
    assert train["jit_compile_resolved"] == default["config"]["jit_compile"]


def test_train_section_compares_the_training_solvers(smoke):
    train = smoke[1]["sections"]["train"]
    entry = train["models"]["ddeq_mnist"]
    euler, anderson = entry["solvers"]["euler"], entry["solvers"]["anderson"]
    assert euler["config"]["solver"] == "euler" and euler["config"]["eta"] == 5.0
    assert euler["config"]["tol"] == 1e-4 and euler["config"]["check_every"] == 100
    assert anderson["config"]["solver"] == "anderson" and anderson["config"]["tol"] == 1e-4
    for result, cap in ((euler, 3), (anderson, 3)):
        assert result["config"]["max_steps"] == cap
        assert positive(result["step_s"])
        # Mean updates per sample within the cap, and a share in [0, 1].
        assert 1.0 <= result["evals_per_sample"] <= cap
        assert 0.0 <= result["converged_share"] <= 1.0
    # Euler's rule is checked every 100 steps: with a cap of 3 it always runs all 3.
    assert euler["evals_per_sample"] == 3.0
    assert entry["ratio_euler_over_anderson"] == pytest.approx(
        euler["step_s"] / anderson["step_s"])
    assert train["solver_settings"]["anderson"]["max_steps"] == 3
    table = benchmark.format_tables(smoke[1])
    assert "solver anderson: s per step / evals per sample / converged" in table


def test_infer_throughput(smoke):
    infer = smoke[1]["sections"]["infer"]
    entry = infer["models"]["ddeq_mnist"]
    for mode in core.MODES:
        m = entry["modes"][mode]
        assert positive(m["clouds_per_s"])
        assert m["clouds_per_s"] == pytest.approx(infer["batch_size"] / m["batch_s"])
    assert entry["ratio_default_over_reference"] == pytest.approx(
        entry["modes"]["default"]["clouds_per_s"] / entry["modes"]["reference"]["clouds_per_s"])


def test_jit_settings(smoke):
    jit = smoke[1]["sections"]["jit"]
    settings = jit["settings"]
    assert set(settings) == {"jit_compile=True", "jit_compile=False"}
    for key, entry in settings.items():
        # torch.compile (torch, True) may time out: then the error is recorded.
        assert ("error" in entry and entry["error"]) or positive(entry["step_s"]), (key, entry)
    assert positive(settings["jit_compile=False"]["step_s"])
    if BACKEND != "torch":
        assert positive(settings["jit_compile=True"]["step_s"])
    if all(core.ok(e) for e in settings.values()):
        assert jit["ratio_false_over_true"] == pytest.approx(
            settings["jit_compile=False"]["step_s"] / settings["jit_compile=True"]["step_s"])


def test_memory_small_and_large_flows(smoke):
    memory = smoke[1]["sections"]["memory"]
    assert memory["steps"] == [3, 30]
    for backward in ("phantom", "implicit"):
        res = memory["results"][backward]
        for k in ("3", "30"):
            assert positive(res[k]["peak_mib"]), res[k]
            assert res[k]["config"]["backward"] == backward
            assert res[k]["config"]["max_steps"] == int(k)
            assert res[k]["method"]
            if BACKEND == "jax":  # XLA's account of the compiled step, recorded too
                assert res[k]["xla_memory_analysis"]["step_bytes"] > 0
        assert res["ratio_30_over_3"] == pytest.approx(res["30"]["peak_mib"] / res["3"]["peak_mib"])
        if not memory["results"][backward]["3"]["method"].startswith("gpu"):
            # CPU: the peak of the step is at least the RSS before it.
            assert res["3"]["peak_rss_step_mib"] >= res["3"]["rss_after_warmup_mib"] - 1.0


def test_solvers_section(smoke):
    solvers = smoke[1]["sections"]["solvers"]
    assert "untrained" in solvers["note"]
    assert solvers["num_examples"] == 8
    euler = solvers["results"]["euler"]
    assert 0.0 <= euler["accuracy"] <= 1.0
    assert 0.0 <= euler["converged_share"] <= 1.0
    assert euler["evals_max"] >= 1 and euler["evals_mean_all"] >= 1
    assert euler["evals_max"] <= solvers["max_steps"] + 1
    assert positive(euler["batch_s"]) and euler["num_batches"] == 2
    assert euler["config"]["solver"] == "euler" and euler["config"]["eta"] == 5.0
    assert euler["config"]["tol"] == 1e-4 and euler["config"]["max_steps"] == 50
    if euler["evals_mean_converged"] is not None:
        assert euler["evals_mean_converged"] >= 1
    anderson = solvers["results"]["anderson"]
    assert core.ok(anderson), anderson
    assert 0.0 <= anderson["accuracy"] <= 1.0 and anderson["evals_max"] >= 1
    assert anderson["evals_max"] <= solvers["max_steps"] + 1
    assert anderson["config"]["solver"] == "anderson"
    assert "euler_vs_anderson" in solvers


def test_tables_from_saved_runs(smoke, capsys):
    returned, _, path = smoke
    table = returned["table"]
    for title in ("Training step", "Inference", "jit_compile=True", "Peak memory", "Solvers"):
        assert title in table
    out = benchmark.main(["--table-only", str(path), str(path)])
    combined = capsys.readouterr().out
    label = f"{BACKEND} (smoke)"
    assert f"| model | mode | {label} | {label} |" in combined
    assert out["table"] in combined


@pytest.mark.parametrize("command", [["training/benchmark.py"], ["-m", "training.benchmark"]])
def test_command_line_as_script_and_module(smoke, command):
    # Both ways of running it from the repository root print the tables of `main`.
    path = smoke[2]
    out = subprocess.run([sys.executable, *command, "--table-only", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    expected = benchmark.main(["--table-only", str(path)])["table"]
    assert "Training step" in expected and out == expected + "\n"


def test_failed_configurations_are_recorded():
    with single_threaded():
        results = benchmark.main(["--smoke", "--sections", "train,solvers", "--models",
                                  "no_such_model", "--solvers", "no_such_solver"])
    train = results["sections"]["train"]["models"]["no_such_model"]
    assert "Unknown model" in train["modes"]["default"]["error"]
    assert "error" in train["modes"]["reference"]
    assert "ValueError" in results["sections"]["solvers"]["results"]["no_such_solver"]["error"]
    assert "error (see below)" in results["table"]


def test_worker_timeout_is_an_error():
    cfg = dict(task="memory", model="ddeq_mnist", kwargs={}, overrides={}, batch_size=1,
               num_points=8, jit_compile="auto", repeats=1)
    entry = worker.run_worker_subprocess(cfg, timeout=0.5)
    assert "timed out" in entry["error"]


def test_pack_npz_round_trip(tmp_path, rng):
    num, length, dim = 5, 12, 3
    counts = np.array([12, 1, 7, 3, 12])
    mask = np.arange(length)[None, :] < counts[:, None]
    points = np.where(mask[..., None], rng.normal(size=(num, length, dim)), 0).astype("float32")
    labels = np.array([3, 0, 9, 1, 4])
    path = tmp_path / "clouds.npz"
    pack_npz(points, mask, labels, path)
    with np.load(path) as data:
        assert sorted(data.files) == ["test_counts", "test_labels", "test_points"]
        assert data["test_points"].shape == (counts.sum(), dim)
    x, y = unpack_npz(path, length)
    np.testing.assert_array_equal(x["points"], points)
    np.testing.assert_array_equal(x["mask"], mask)
    np.testing.assert_array_equal(y, labels)
    assert x["points"].dtype == np.float32 and x["mask"].dtype == bool
    # A longer padded length pads with zeros; max_examples takes the first clouds.
    x2, y2 = unpack_npz(path, length + 4, max_examples=2)
    np.testing.assert_array_equal(x2["points"][:, :length], points[:2])
    assert not x2["mask"][:, length:].any() and not x2["points"][:, length:].any()
    np.testing.assert_array_equal(y2, labels[:2])
    with pytest.raises(ValueError, match="more than the padded length"):
        unpack_npz(path, length - 1)


def test_train_modes_can_be_left_out():
    # `--train-modes ""`: only the training solvers (a full-size Euler-200 vs
    # Anderson comparison without the two fixed-step modes); errors (an unknown
    # model) fail fast, so nothing compiles here.
    with single_threaded():
        results = benchmark.main(["--smoke", "--sections", "train", "--train-modes", "",
                                  "--models", "no_such_model"])
    entry = results["sections"]["train"]["models"]["no_such_model"]
    assert entry["modes"] == {}
    assert set(entry["solvers"]) == {"euler", "anderson"}
    assert "Unknown model" in entry["solvers"]["euler"]["error"]
    assert "ratio_reference_over_default" not in entry
    assert "reference" not in results["table"]
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--train-modes", "fastest"])


def test_time_calls_without_repeats_times_the_first_call():
    # `--repeats 0` (steps of many minutes): one call, reported as the median.
    calls = []
    timing = core.time_calls(lambda: calls.append(1), 0)
    assert len(calls) == 1 and timing["times_s"] == []
    assert timing["median_s"] == timing["first_call_s"] >= 0.0
    timing = core.time_calls(lambda: calls.append(1), 2)
    assert len(calls) == 4 and len(timing["times_s"]) == 2


def test_train_section_trains_a_completer():
    # A completion model's targets are clouds, not labels (the synthetic batch's
    # inputs stand in for them); it was "`y` must have rank 3" before.
    with single_threaded():
        results = benchmark.main(["--smoke", "--sections", "train", "--train-modes", "",
                                  "--models", "ddeq_mnist_completion", "--repeats", "0"])
    solvers = results["sections"]["train"]["models"]["ddeq_mnist_completion"]["solvers"]
    for name in ("euler", "anderson"):
        entry = solvers[name]
        assert "error" not in entry, entry
        assert entry["steps_timed"] == 0 and entry["step_s"] == entry["first_call_s"] > 0
        assert 1.0 <= entry["evals_per_sample"] <= 3


def test_data_parallel_train_step(tmp_path):
    # `--data-parallel` (JAX): the step runs under keras.distribution.DataParallel over
    # two simulated host devices; the run says so. Elsewhere: refused, naming JAX.
    args = ["--smoke", "--sections", "train", "--train-modes", "", "--train-solvers",
            "anderson", "--models", "ddeq_mnist", "--repeats", "1", "--data-parallel"]
    if BACKEND != "jax":
        with pytest.raises(SystemExit, match=f"JAX backend only.*{BACKEND} backend"):
            benchmark.main(args)
        return
    path = tmp_path / "dp.json"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run([sys.executable, "training/benchmark.py", *args, "--output",
                          str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Data parallel over 2 devices" in out.stdout
    saved = json.loads(path.read_text())
    assert saved["meta"]["data_parallel_devices"] == 2
    entry = saved["sections"]["train"]["models"]["ddeq_mnist"]["solvers"]["anderson"]
    assert "error" not in entry, entry
    assert positive(entry["step_s"]) and 1 <= entry["evals_per_sample"] <= 3
    assert "data parallel over 2 devices" in saved["table"]
    assert "| jax, 2 devices (smoke) |" in saved["table"]


def test_attention_speed_compares_the_sliced_path(tmp_path, monkeypatch, capsys):
    """`training.attention_speed` on a tiny DDEQ whose attention takes the sliced path
    on JAX (its threshold lowered): both models' first training steps
    give the same loss (float32 rounding through an Anderson solve: 1e-4), and the
    record names each policy and has positive times."""
    from ddeq_keras.ops import attention as attention_ops
    from training import attention_speed

    monkeypatch.setattr(attention_ops, "SLICED_MIN_ELEMENTS", 0)
    out = tmp_path / "speed.json"
    with single_threaded():
        attention_speed.main(["--batch-size", "4", "--num-points", "24", "--repeats", "1",
                              "--model-option", "latent_dim=16", "--model-option",
                              "num_heads=2", "--model-option", "max_steps=4",
                              "--output", str(out)])
    record = json.loads(out.read_text())
    assert record["policies"]["not sliced"]["slice_group_elements"] is None
    slices = BACKEND == "jax"
    assert bool(record["policies"]["sliced"]["slice_group_elements"]) == slices
    assert all(positive(record["medians"][k]) for k in ("sliced", "not sliced"))
    losses = record["first_step_loss"]
    assert losses["sliced"] == pytest.approx(losses["not sliced"], abs=1e-4)
    assert ("does not slice" in capsys.readouterr().out) == (not slices)
