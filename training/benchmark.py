"""Benchmark DDEQ models on the backend named by KERAS_BACKEND; print a table, save JSON.

One run measures, on one backend (every figure is measured in that run):

* ``train``: seconds per training step (``model.train_on_batch``; one untimed warm-up
  call, then the median of ``--repeats`` timed calls) of each model in ``--models``, in
  two modes with equal flow work (``tol=0``: every sample runs exactly ``--flow-steps``
  steps):
  - ``default``: our defaults, ``create_model(name, max_steps=S, tol=0.0)`` (x-only work
    done once per forward pass, our ``check_every``);
  - ``reference``: the authors' semantics run by our code: ``precompute_context=False``
    (x-only work redone at every flow step), ``solver="euler"``, ``eta=5``,
    ``check_every=100``, ``max_steps=S``, ``tol=0.0``.
  Prints reference/default. Models are compiled with ``model.compile()`` (Keras's
  ``jit_compile="auto"``: XLA on JAX, no XLA on TensorFlow on CPU, eager on torch); the
  resolved setting is recorded.
* ``infer``: clouds per second of ``model.predict_on_batch`` (the backend's compiled
  predict function: ``jax.jit`` on JAX, ``tf.function`` on TensorFlow, eager on torch)
  on one batch, after a warm-up call, for the same models and modes.
* ``jit``: training step of ``--jit-model`` (default mode) compiled with
  ``jit_compile=True`` vs ``False``. On torch ``True`` is ``torch.compile`` inside Keras;
  it runs in a subprocess limited to ``--jit-timeout`` seconds, since it can take minutes.
  A setting equal to the one the ``train`` section resolved reuses that compiled model
  (timed again here).
* ``memory``: peak memory of one training step of ``--memory-model`` at each of
  ``--memory-steps`` flow steps (``max_steps=k, tol=0``) for each of
  ``--memory-backwards``, each in a fresh subprocess, and the ratio largest/smallest.
  On a GPU: the device allocator's peak (``torch.cuda.max_memory_allocated`` after a reset;
  TensorFlow ``get_memory_info`` after a reset; on JAX, whose ``peak_bytes_in_use`` cannot
  be reset and includes the scratch memory of compilation, XLA's memory analysis of the
  compiled step, with the allocator's peak also recorded). On CPU: the peak resident set
  size during the timed step (the kernel's high-water mark ``VmHWM`` reset just before it
  through ``/proc/self/clear_refs``, after ``gc`` and ``malloc_trim``; where that is not
  possible, RSS sampled every millisecond) minus the RSS after the imports (on JAX, XLA's
  memory analysis is recorded too). The method is recorded.
* ``solvers`` (only with ``--checkpoint`` and ``--data``, or in ``--smoke``): evaluates
  the test clouds in inference mode with each solver of ``--solvers``: accuracy, map
  evaluations per sample until the stopping rule was met (mean / median / 90th
  percentile over converged samples), share converged, mean final relative MMD^2, wall
  time per batch, and the ratio of mean evaluations Euler/Anderson (over the samples
  both solvers converged on). ``tol=1e-4``, ``stopping="rel"``, per-sample stopping,
  ``--solver-max-steps`` cap, Euler ``eta=--euler-eta``, ``check_every=--solver-check-every``
  (1: exact counts). ``--data`` is a packed ``.npz`` (keys ``test_points`` (sum n_i, d),
  ``test_counts`` (num,), ``test_labels`` (num,); see `pack_npz`) or ``tfds:NAME`` with
  ``--data-dir`` (TensorFlow is imported only then).

Each configuration that fails is recorded as ``{"error": ...}`` and the run goes on.
``--smoke`` uses tiny sizes everywhere (batch 4, 24 points, 3 flow steps, a tiny network;
memory at 3 and 30 steps; the solvers section on an untrained tiny model and generated
clouds): its numbers only show that every section runs.

Examples:
    KERAS_BACKEND=jax python training/benchmark.py --output bench_jax.json
    KERAS_BACKEND=torch python training/benchmark.py --smoke          # tiny, for CI
    KERAS_BACKEND=jax python training/benchmark.py --sections train,infer \\
        --models ddeq_mnist --batch-size 32 --flow-steps 50
    KERAS_BACKEND=jax python training/benchmark.py --sections solvers \\
        --checkpoint ddeq_mnist.weights.h5 --data mnist_pc.npz --max-examples 1000
    KERAS_BACKEND=jax python training/benchmark.py --sections solvers \\
        --checkpoint ddeq_mnist.weights.h5 --data tfds:mnist_point_cloud --data-dir DIR
    python training/benchmark.py --table-only bench_jax.json bench_tf.json bench_torch.json
"""

import argparse
import datetime
import gc
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

SECTIONS = ("train", "infer", "jit", "memory", "solvers")
MODES = ("default", "reference")
SMOKE_OVERRIDES = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=32)
# Option -> (full-size default, smoke default); None: per model / all examples.
SIZE_DEFAULTS = {
    "batch_size": (64, 4),
    "num_points": (None, 24),
    "flow_steps": (200, 3),
    "memory_steps": ("50,500", "3,30"),
    "solver_max_steps": (1000, 50),
    "max_examples": (None, 8),
    "solver_batch_size": (64, 4),
    "jit_timeout": (1800.0, 30.0),
    "worker_timeout": (1800.0, 300.0),
    "memory_jobs": (1, 2),
}
WORKER_MARK = "@@BENCHMARK_RESULT@@"
MIB = 2.0**20


# --------------------------------------------------------------------------- data


def synthetic_batch(batch_size, num_points, point_dim, seed=0, num_classes=10):
    """Random clouds with a random number of valid points each, padded (zeros) to
    ``num_points``; timing does not depend on the values."""
    rng = np.random.default_rng(seed)
    valid = rng.integers(max(num_points // 4, 1), num_points + 1, batch_size)
    mask = np.arange(num_points)[None, :] < valid[:, None]
    points = rng.normal(size=(batch_size, num_points, point_dim)).astype("float32")
    points = np.where(mask[..., None], points, 0).astype("float32")
    labels = rng.integers(0, num_classes, batch_size).astype("int32")
    return {"points": points, "mask": mask}, labels


def pack_npz(points, mask, labels, path, split="test"):
    """Writes padded clouds in the packed format that ``--data x.npz`` reads.

    Keys: ``{split}_points`` (sum of n_i, d): the valid points of every cloud,
    concatenated in order; ``{split}_counts`` (num,): valid points per cloud;
    ``{split}_labels`` (num,). Unpacking gives prefix masks, so padded arrays
    with prefix masks (valid points first) round-trip exactly.
    """
    points = np.asarray(points)
    mask = np.asarray(mask, dtype=bool)
    if points.ndim != 3 or mask.shape != points.shape[:2]:
        raise ValueError(f"points (num, N, d) and mask (num, N) expected; got "
                         f"{points.shape} and {mask.shape}.")
    np.savez(
        path,
        **{
            f"{split}_points": points[mask],
            f"{split}_counts": mask.sum(axis=1).astype("int64"),
            f"{split}_labels": np.asarray(labels).astype("int64"),
        },
    )


def unpack_npz(path, num_points, split="test", max_examples=None):
    """Reads the packed format into ``({"points": (num, N, d) float32, "mask": (num, N)
    bool}, labels (num,) int32)`` with prefix masks and zero padding."""
    with np.load(path) as data:
        counts = data[f"{split}_counts"].astype("int64")
        labels = data[f"{split}_labels"].astype("int32")
        if max_examples is not None:
            counts, labels = counts[:max_examples], labels[:max_examples]
        total = int(counts.sum())
        flat = data[f"{split}_points"][:total].astype("float32")
    if flat.shape[0] != total:
        raise ValueError(f"{path}: {split}_points has {flat.shape[0]} rows, counts say {total}.")
    if counts.size and counts.max() > num_points:
        raise ValueError(f"{path}: a cloud has {counts.max()} points, more than the padded "
                         f"length {num_points}.")
    mask = np.arange(num_points)[None, :] < counts[:, None]
    points = np.zeros(mask.shape + (flat.shape[1],), "float32")
    points[mask] = flat
    return {"points": points, "mask": mask}, labels


def load_tfds(name, num_points, batch_size, data_dir, max_examples=None):
    """The test split of a TFDS point-cloud data set, as padded numpy arrays."""
    from ddeq_keras.datasets import make_pipeline  # imports TensorFlow

    dataset = make_pipeline(name, "test", num_points=num_points, batch_size=batch_size,
                            data_dir=data_dir)
    points, masks, labels, seen = [], [], [], 0
    for x, y in dataset.as_numpy_iterator():
        points.append(x["points"])
        masks.append(x["mask"])
        labels.append(y)
        seen += len(y)
        if max_examples is not None and seen >= max_examples:
            break
    x = {"points": np.concatenate(points).astype("float32"),
         "mask": np.concatenate(masks).astype(bool)}
    y = np.concatenate(labels).astype("int32")
    if max_examples is not None:
        x = {k: v[:max_examples] for k, v in x.items()}
        y = y[:max_examples]
    return x, y


# --------------------------------------------------------------------------- machine


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerator():
    """Name of the GPU the current backend computes on, or None."""
    import keras

    backend = keras.config.backend()
    try:
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return getattr(device, "device_kind", str(device))
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return details.get("device_name", gpus[0].name)
    except Exception:  # a broken GPU runtime: report the CPU
        return None
    return None


def machine_info():
    import keras

    backend = keras.config.backend()
    module = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}.get(backend)
    try:
        backend_version = __import__(module).__version__
    except Exception:
        backend_version = None
    cpus = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cpus
    gpu = accelerator()
    cpu = f"{cpu_name()}, {usable} CPUs" + (f" (of {cpus})" if usable != cpus else "")
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "XLA_FLAGS") if k in os.environ}
    if backend == "torch":
        import torch

        threads["torch_intra_op"] = torch.get_num_threads()
    return {
        "backend": backend,
        "keras_version": keras.__version__,
        "backend_version": backend_version,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "device": gpu if gpu else cpu,
        "gpu": gpu,
        "cpu": cpu,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host_platform": platform.platform(),
        "cpus_usable": usable,
        "threads": threads,
        "load_average_start": load_average(),
    }


def load_average():
    """1/5/15-minute load averages of the machine (other processes skew CPU timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_busy_fraction(seconds=0.5):
    """Share of all CPUs busy during ``seconds`` while this process sleeps (other
    processes' load, from /proc/stat), or None."""
    def times():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(seconds)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return round(1.0 - (idle1 - idle0) / (total1 - total0), 3)


def busy_note(meta):
    busy = [b for b in (meta.get("cpu_busy_at_start"), meta.get("cpu_busy_at_end"))
            if b is not None]
    cpus = meta.get("cpus_usable")
    if busy and not meta.get("gpu") and max(busy) > 0.25:
        note = (f"other processes kept {max(busy):.0%} of the {cpus} CPUs busy (measured at "
                "the start/end of the run): CPU timings are unreliable")
        if (meta.get("threads") or {}).get("torch_intra_op", 1) > 1:
            note += (" (torch's CPU threads slowed down 10-50x here when another process "
                     "held a core)")
        return note
    return None


# --------------------------------------------------------------------------- helpers


def error_entry(exc):
    text = f"{type(exc).__name__}: {exc}".strip()
    return {"error": text[:4000], "traceback": traceback.format_exc()[-4000:]}


def guarded(label, fn, *args, **kwargs):
    """``fn(...)``, or ``{"error": ...}`` (printed) if it raises."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # one failed configuration must not lose the others
        entry = error_entry(exc)
        print(f"  {label}: FAILED: {entry['error'][:300]}", file=sys.stderr, flush=True)
        return entry


def ok(entry):
    return isinstance(entry, dict) and "error" not in entry


def mode_kwargs(mode, steps):
    """`create_model` overrides of a benchmark mode (see the module docstring)."""
    if mode == "default":
        return dict(max_steps=steps, tol=0.0)
    if mode == "reference":
        return dict(precompute_context=False, eta=5.0, check_every=100, max_steps=steps,
                    tol=0.0, solver="euler")
    raise ValueError(f"Unknown mode {mode!r}; known: {MODES}.")


def padded_length(name, num_points):
    from ddeq_keras.models.configs import MODEL_CONFIGS

    if num_points:
        return int(num_points)
    try:
        return int(MODEL_CONFIGS[name][2])
    except KeyError:
        raise ValueError(f"Unknown model {name!r}.") from None


def model_summary(model):
    """What was actually built: solver options and where the x-work runs."""
    config = {}
    if hasattr(model, "solver_config"):
        config.update(model.solver_config())
    for key in ("precompute_context", "latent_dim", "num_cross_blocks"):
        if hasattr(model, key):
            config[key] = getattr(model, key)
    config["jit_compile"] = getattr(model, "jit_compile", None)
    config["trainable_params"] = int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    return config


def time_calls(fn, repeats):
    """``fn()`` once untimed (compilation, building), then ``repeats`` timed calls."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(max(int(repeats), 1)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"first_call_s": first, "median_s": float(np.median(times)), "times_s": times}


class ModelCache:
    """Compiled models by (name, mode, jit_compile), shared by train, infer and jit."""

    def __init__(self, args):
        self.args = args
        self.models = {}

    def get(self, name, mode, jit_compile="auto"):
        key = (name, mode, jit_compile)
        if key not in self.models:
            from ddeq_keras.models import create_model

            model = create_model(name, **mode_kwargs(mode, self.args.flow_steps),
                                 **self.args.overrides)
            model.compile(jit_compile=jit_compile)
            self.models[key] = model
        return self.models[key]

    def find(self, name, mode, resolved_jit):
        """A cached model of this name and mode whose compile resolved to ``resolved_jit``."""
        for (n, m, _), model in self.models.items():
            resolved = bool(getattr(model, "jit_compile", None))
            if n == name and m == mode and resolved == resolved_jit:
                return model
        return None

    def clear(self):
        self.models.clear()
        gc.collect()
        release_device_cache()


def release_device_cache():
    try:
        import keras

        if keras.config.backend() == "torch":
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    except Exception:
        pass


def batch_for(args, name, model):
    n = padded_length(name, args.num_points)
    return synthetic_batch(args.batch_size, n, model.point_dim,
                           num_classes=getattr(model, "num_classes", 10))


# --------------------------------------------------------------------------- train / infer


def measure_train(model, x, y, repeats):
    timing = time_calls(lambda: model.train_on_batch(x, y), repeats)
    return {"step_s": timing["median_s"], "first_call_s": timing["first_call_s"],
            "times_s": timing["times_s"], "steps_timed": len(timing["times_s"])}


def section_train(args, cache):
    out = {"compile": "model.compile() (jit_compile='auto')", "batch_size": args.batch_size,
           "flow_steps": args.flow_steps, "repeats": args.repeats, "models": {}}
    for name in args.models:
        entry = {"num_points": guarded(f"train {name}", padded_length, name, args.num_points),
                 "modes": {}}
        for mode in MODES:
            def run(name=name, mode=mode):
                model = cache.get(name, mode)
                x, y = batch_for(args, name, model)
                result = measure_train(model, x, y, args.repeats)
                result["config"] = model_summary(model)
                return result

            entry["modes"][mode] = guarded(f"train {name} {mode}", run)
            log_entry("train", name, mode, entry["modes"][mode], "step_s", "s per step")
        d, r = entry["modes"].get("default"), entry["modes"].get("reference")
        if ok(d) and ok(r):
            entry["ratio_reference_over_default"] = r["step_s"] / d["step_s"]
        out["models"][name] = entry
    resolved = {m["config"]["jit_compile"] for e in out["models"].values()
                for m in e["modes"].values() if ok(m)}
    out["jit_compile_resolved"] = sorted(resolved)[0] if len(resolved) == 1 else sorted(resolved)
    return out


def section_infer(args, cache):
    out = {"method": "model.predict_on_batch (compiled predict function: jax.jit on JAX, "
                     "tf.function on TensorFlow, eager on torch)",
           "batch_size": args.batch_size, "flow_steps": args.flow_steps,
           "repeats": args.repeats, "models": {}}
    for name in args.models:
        entry = {"modes": {}}
        for mode in MODES:
            def run(name=name, mode=mode):
                model = cache.get(name, mode)
                x, _ = batch_for(args, name, model)
                timing = time_calls(lambda: model.predict_on_batch(x), args.repeats)
                return {"clouds_per_s": args.batch_size / timing["median_s"],
                        "batch_s": timing["median_s"], "first_call_s": timing["first_call_s"],
                        "times_s": timing["times_s"],
                        "jit_compile": getattr(model, "jit_compile", None)}

            entry["modes"][mode] = guarded(f"infer {name} {mode}", run)
            log_entry("infer", name, mode, entry["modes"][mode], "clouds_per_s", "clouds/s")
        d, r = entry["modes"].get("default"), entry["modes"].get("reference")
        if ok(d) and ok(r):
            entry["ratio_default_over_reference"] = d["clouds_per_s"] / r["clouds_per_s"]
        out["models"][name] = entry
    return out


def log_entry(section, name, mode, entry, key, unit):
    if ok(entry):
        print(f"  {section} {name} {mode}: {entry[key]:.4g} {unit} "
              f"(first call {entry['first_call_s']:.1f} s)", flush=True)


# --------------------------------------------------------------------------- jit


def section_jit(args, cache):
    import keras

    backend = keras.config.backend()
    name, mode = args.jit_model, "default"
    out = {"model": name, "mode": mode, "batch_size": args.batch_size,
           "flow_steps": args.flow_steps, "repeats": args.repeats, "settings": {}}
    for jit in (True, False):
        key = f"jit_compile={jit}"
        if backend == "torch" and jit:
            # torch.compile can take minutes (and leaves global state behind): isolate it.
            cfg = dict(task="train_step", model=name, kwargs=mode_kwargs(mode, args.flow_steps),
                       overrides=args.overrides, batch_size=args.batch_size,
                       num_points=padded_length(name, args.num_points), jit_compile=True,
                       repeats=args.repeats)
            entry = run_worker_subprocess(cfg, args.jit_timeout)
            if ok(entry):
                entry["isolation"] = "subprocess"
            out["settings"][key] = entry
            log_entry("jit", name, key, entry, "step_s", "s per step")
            continue

        def run(jit=jit):
            model = cache.find(name, mode, jit)
            reused = model is not None
            if model is None:
                model = cache.get(name, mode, jit_compile=jit)
            x, y = batch_for(args, name, model)
            result = measure_train(model, x, y, args.repeats)
            result["jit_compile"] = getattr(model, "jit_compile", None)
            # A reused model was compiled (and warmed up) by the train section.
            result["reused_train_section_model"] = reused
            return result

        out["settings"][key] = guarded(f"jit {key}", run)
        log_entry("jit", name, key, out["settings"][key], "step_s", "s per step")
    t, f = out["settings"].get("jit_compile=True"), out["settings"].get("jit_compile=False")
    if ok(t) and ok(f):
        out["ratio_false_over_true"] = f["step_s"] / t["step_s"]
    if backend == "torch":
        out["note"] = "jit_compile=True is torch.compile inside Keras"
    return out


# --------------------------------------------------------------------------- memory


def _proc_status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib():
    kb = _proc_status_kb("VmRSS")
    if kb is not None:
        return kb / 1024.0
    try:
        import psutil

        return psutil.Process().memory_info().rss / MIB
    except Exception:
        return None


def lifetime_peak_rss_mib():
    kb = _proc_status_kb("VmHWM")
    if kb is not None:
        return kb / 1024.0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024.0


def release_free_heap():
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except Exception:
        return False


class PeakRSS:
    """Peak RSS of the process during a block: the kernel's high-water mark reset at
    entry (``/proc/self/clear_refs``), else RSS sampled every millisecond, else the
    lifetime ``ru_maxrss``. ``.method`` says which."""

    def __enter__(self):
        self.peak = None
        self._stop = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM reset before the step"
        except OSError:
            if rss_mib() is not None:
                self.method = "RSS sampled every 1 ms during the step"
                self._samples = [rss_mib()]
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
            else:
                self.method = "ru_maxrss: process lifetime, not isolated"
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._samples.append(rss_mib())

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._samples.append(rss_mib())
            self.peak = max(self._samples)
        else:
            self.peak = lifetime_peak_rss_mib()
        return False


def gpu_memory_probe(backend):
    """(reset, read) functions for the device allocator's peak bytes, and a method name,
    or None on CPU."""
    if accelerator() is None:
        return None
    if backend == "torch":
        import torch

        def reset():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()

        def read():
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()

        return reset, read, "gpu: torch.cuda.max_memory_allocated (reset before the step)"
    if backend == "jax":
        import jax

        device = jax.devices()[0]

        def reset():
            return device.memory_stats().get("bytes_in_use")

        def read():
            return device.memory_stats()["peak_bytes_in_use"]

        return reset, read, ("gpu: jax memory_stats()['peak_bytes_in_use'] (process "
                             "lifetime; the warm-up ran the same step)")
    if backend == "tensorflow":
        import tensorflow as tf

        def reset():
            tf.config.experimental.reset_memory_stats("GPU:0")
            return tf.config.experimental.get_memory_info("GPU:0")["current"]

        def read():
            return tf.config.experimental.get_memory_info("GPU:0")["peak"]

        return reset, read, "gpu: tf get_memory_info('GPU:0')['peak'] (reset before the step)"
    return None


def section_memory(args):
    steps = [int(s) for s in str(args.memory_steps).split(",") if s.strip()]
    out = {"model": args.memory_model, "batch_size": args.batch_size,
           "num_points": guarded("memory", padded_length, args.memory_model, args.num_points),
           "steps": steps, "backwards": list(args.memory_backwards),
           "isolation": "one fresh subprocess per measurement", "jobs": args.memory_jobs,
           "results": {}}
    jobs = []
    for backward in args.memory_backwards:
        out["results"][backward] = {}
        for k in steps:
            cfg = dict(task="memory", model=args.memory_model,
                       kwargs=dict(max_steps=k, tol=0.0, backward=backward),
                       overrides=args.overrides, batch_size=args.batch_size,
                       num_points=out["num_points"], jit_compile="auto", repeats=1)
            jobs.append((backward, k, cfg))

    extra_env = {}
    if args.memory_jobs > 1 and accelerator() is None and "OMP_NUM_THREADS" not in os.environ:
        # Parallel workers on CPU: split the cores (torch slows down many times when its
        # threads outnumber the free cores). Affects the step time, not the memory.
        try:
            usable = len(os.sched_getaffinity(0))
        except AttributeError:
            usable = os.cpu_count() or 1
        extra_env["OMP_NUM_THREADS"] = str(max(1, usable // args.memory_jobs))
    out["worker_env"] = extra_env

    def run(job):
        backward, k, cfg = job
        if not isinstance(cfg["num_points"], int):
            return backward, k, cfg["num_points"]
        return backward, k, run_worker_subprocess(cfg, args.worker_timeout, extra_env)

    if args.memory_jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.memory_jobs) as pool:
            finished = list(pool.map(run, jobs))
    else:
        finished = [run(job) for job in jobs]
    methods = set()
    for backward, k, entry in finished:
        out["results"][backward][str(k)] = entry
        if ok(entry):
            methods.add(entry["method"])
            print(f"  memory {backward} {k} steps: {entry['peak_mib']:.1f} MiB", flush=True)
        else:
            print(f"  memory {backward} {k} steps: FAILED: {entry['error'][:300]}",
                  file=sys.stderr, flush=True)
    out["method"] = sorted(methods)[0] if len(methods) == 1 else sorted(methods)
    lo, hi = (str(min(steps)), str(max(steps))) if steps else (None, None)
    for backward in args.memory_backwards:
        res = out["results"][backward]
        if lo != hi and ok(res.get(lo)) and ok(res.get(hi)) and res[lo]["peak_mib"] > 0:
            res[f"ratio_{hi}_over_{lo}"] = res[hi]["peak_mib"] / res[lo]["peak_mib"]
    return out


# --------------------------------------------------------------------------- workers


def run_worker(cfg):
    """Runs in a fresh process: build, compile, warm up, time one configuration (and
    measure its memory for ``task="memory"``)."""
    rss_start = rss_mib()
    import keras

    from ddeq_keras.models import create_model

    backend = keras.config.backend()
    keras.utils.set_random_seed(0)  # entry point of this process
    probe = gpu_memory_probe(backend) if cfg["task"] == "memory" else None
    rss_import = rss_mib()
    model = create_model(cfg["model"], **cfg["kwargs"], **cfg["overrides"])
    model.compile(jit_compile=cfg["jit_compile"])
    x, y = synthetic_batch(cfg["batch_size"], cfg["num_points"], model.point_dim,
                           num_classes=getattr(model, "num_classes", 10))
    rss_built = rss_mib()
    if cfg["task"] == "train_step":
        result = measure_train(model, x, y, cfg["repeats"])
        result["jit_compile"] = getattr(model, "jit_compile", None)
        return result

    start = time.perf_counter()
    model.train_on_batch(x, y)  # warm-up: compilation
    first = time.perf_counter() - start
    trimmed = release_free_heap()
    rss_warm = rss_mib()
    peak_through_warmup = lifetime_peak_rss_mib()
    result = {"first_call_s": first, "rss_at_start_mib": rss_start,
              "rss_after_import_mib": rss_import, "rss_after_build_mib": rss_built,
              "rss_after_warmup_mib": rss_warm, "peak_rss_through_warmup_mib":
              peak_through_warmup, "malloc_trim": trimmed,
              "jit_compile": getattr(model, "jit_compile", None), "config": model_summary(model)}
    if probe is not None:
        reset, read, method = probe
        before = reset()
        start = time.perf_counter()
        model.train_on_batch(x, y)
        result["step_s"] = time.perf_counter() - start
        peak = read()
        result.update(method=method, device_bytes_before_step=before,
                      device_peak_bytes=peak, peak_mib=peak / MIB)
        if backend == "jax":
            # JAX cannot reset its allocator's peak, and compilation (autotuning) allocates
            # scratch on the device: on an H100 the lifetime peak was the same 528 MiB for
            # every configuration of the tiny smoke model, whose state took 146 KiB. XLA's
            # own account of the compiled step does not see compilation: use it.
            analysis = guarded("xla memory analysis", xla_step_memory, model, x, y)
            result["xla_memory_analysis"] = analysis
            if ok(analysis):
                result.update(
                    method="gpu: XLA memory analysis of the compiled train step (arguments "
                           "+ outputs + temporaries - aliased; allocator lifetime peak in "
                           "device_peak_bytes)",
                    peak_mib=analysis["step_bytes"] / MIB)
        return result
    with PeakRSS() as meter:
        start = time.perf_counter()
        model.train_on_batch(x, y)
        result["step_s"] = time.perf_counter() - start
    result.update(
        method=f"cpu: peak RSS in the step - RSS after imports ({meter.method})",
        peak_rss_step_mib=meter.peak, peak_mib=meter.peak - rss_import,
        step_growth_mib=meter.peak - rss_warm,
    )
    if backend == "jax":  # for reference: XLA's account of the step (cheap: cached)
        result["xla_memory_analysis"] = guarded("xla memory analysis", xla_step_memory,
                                                model, x, y)
    return result


def xla_step_memory(model, x, y):
    """Device bytes of the compiled JAX train step, by XLA's buffer assignment: the
    arguments (weights, optimizer and metric state, batch), outputs and temporaries,
    less what outputs reuse of the (donated) arguments. Compiles the step once more."""
    import jax

    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True,
                                 purge_model_variables=False)
    compiled = jax.jit(model.train_step, donate_argnums=0).lower(state, (x, y, None)).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        raise RuntimeError("this JAX runtime gives no memory analysis")
    fields = {k: int(getattr(analysis, k + "_size_in_bytes"))
              for k in ("argument", "output", "alias", "temp", "generated_code")}
    fields["step_bytes"] = (fields["argument"] + fields["output"] + fields["temp"]
                            - fields["alias"])
    return fields


def worker_env(extra=None):
    import keras

    env = dict(os.environ, **(extra or {}))
    env["KERAS_BACKEND"] = keras.config.backend()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Several processes may share one GPU: allocate on demand.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return env


def run_worker_subprocess(cfg, timeout, extra_env=None):
    """``run_worker(cfg)`` in a fresh Python process (``extra_env`` added to its
    environment); ``{"error": ...}`` on failure or after ``timeout`` seconds (the whole
    process group is then killed)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)]
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=worker_env(extra_env),
                                start_new_session=True)
    except OSError as exc:
        return error_entry(exc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.communicate()
        return {"error": f"timed out after {timeout:g} s (subprocess killed)",
                "wall_s": time.perf_counter() - start}
    for line in reversed(stdout.splitlines()):
        if line.startswith(WORKER_MARK):
            result = json.loads(line[len(WORKER_MARK):])
            if isinstance(result, dict):
                result.setdefault("wall_s", time.perf_counter() - start)
            return result
    tail = (stderr or stdout or "").strip().splitlines()
    return {"error": f"subprocess exited with code {proc.returncode} and no result: "
                     + " | ".join(tail[-5:])[-1500:],
            "stderr_tail": "\n".join(tail[-40:])[-4000:]}


# --------------------------------------------------------------------------- solvers


def make_flow_stats_model(inner):
    """A Keras model that returns the inner classifier's logits and its per-sample flow
    statistics (so the backend's compiled predict gives them as numpy)."""
    import keras

    class WithFlowStats(keras.Model):
        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, inputs):
            logits = self.inner(inputs, training=False)
            stats = self.inner._flow_stats
            self.inner._flow_stats = None
            if stats is None:
                raise ValueError("the model recorded no flow statistics (`_flow_stats`).")
            return {"logits": logits, **stats}

    return WithFlowStats(inner)


def batches(x, y, batch_size):
    """Fixed-size batches (the last one padded by repeating its last cloud, so compiled
    functions see one shape), with the number of real clouds in each."""
    num = len(y)
    for start in range(0, num, batch_size):
        stop = min(start + batch_size, num)
        idx = np.arange(start, start + batch_size).clip(max=stop - 1)
        yield {k: v[idx] for k, v in x.items()}, stop - start


def solver_kwargs(solver, args):
    kwargs = dict(solver=solver, max_steps=args.solver_max_steps, tol=1e-4, stopping="rel",
                  per_sample=True, check_every=args.solver_check_every)
    if solver == "euler":
        kwargs["eta"] = args.euler_eta
    return kwargs


def evaluate_solver(solver, args, checkpoint, x, y, overrides):
    from ddeq_keras.models import create_model

    model = create_model(args.solver_model, **solver_kwargs(solver, args), **overrides)
    model.load_weights(checkpoint)
    wrapper = make_flow_stats_model(model)
    outputs, times, first = [], [], None
    for i, (xb, real) in enumerate(batches(x, y, args.solver_batch_size)):
        if i == 0:  # warm-up: compilation
            start = time.perf_counter()
            wrapper.predict_on_batch(xb)
            first = time.perf_counter() - start
        start = time.perf_counter()
        out = wrapper.predict_on_batch(xb)
        times.append(time.perf_counter() - start)
        outputs.append({k: np.asarray(v)[:real] for k, v in out.items()})
    out = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    if "num_evaluations" in out:
        evals, source = out["num_evaluations"].astype("int64"), "num_evaluations"
    else:
        evals, source = out["num_steps"].astype("int64") + 1, "num_steps + 1"
    converged = out["converged"].astype(bool)
    rel = out["mmd_final"].astype("float64") / np.maximum(
        out["mmd_initial"].astype("float64"), 1e-30)
    pred = np.argmax(out["logits"], axis=-1)
    conv_evals = evals[converged]
    result = {
        "accuracy": float(np.mean(pred == y)),
        "num_examples": int(len(y)),
        "converged_share": float(np.mean(converged)),
        "evaluations_source": source,
        "evals_mean_converged": float(conv_evals.mean()) if conv_evals.size else None,
        "evals_median_converged": float(np.median(conv_evals)) if conv_evals.size else None,
        "evals_p90_converged": float(np.percentile(conv_evals, 90)) if conv_evals.size else None,
        "evals_mean_all": float(evals.mean()),
        "evals_max": int(evals.max()),
        "rel_mmd_final_mean": float(np.mean(rel)),
        "rel_mmd_final_median": float(np.median(rel)),
        "batch_s": float(np.median(times)),
        "batch_s_mean": float(np.mean(times)),
        "num_batches": len(times),
        "first_call_s": first,
        "config": model_summary(model),
    }
    result["_per_sample"] = {"evals": evals, "converged": converged, "pred": pred}
    return result


def section_solvers(args):
    import keras

    out = {"solver_model": args.solver_model, "solvers": list(args.solvers), "tol": 1e-4,
           "stopping": "rel", "per_sample": True, "max_steps": args.solver_max_steps,
           "check_every": args.solver_check_every, "euler_eta": args.euler_eta,
           "batch_size": args.solver_batch_size, "results": {}}
    num_points = padded_length(args.solver_model, None if args.checkpoint else args.num_points)
    tmp = None
    if args.checkpoint:
        if not args.data:
            raise ValueError("the solvers section needs --data with --checkpoint.")
        checkpoint, overrides = args.checkpoint, {}
        out.update(checkpoint=os.path.abspath(checkpoint), data=args.data)
        if args.data.startswith("tfds:"):
            x, y = load_tfds(args.data[5:], num_points, args.solver_batch_size, args.data_dir,
                             args.max_examples)
        else:
            x, y = unpack_npz(args.data, num_points, max_examples=args.max_examples)
    elif args.smoke:
        # CI: an untrained tiny model and generated clouds, so the section runs.
        from ddeq_keras.models import create_model

        tmp = tempfile.TemporaryDirectory()
        checkpoint, overrides = os.path.join(tmp.name, "smoke.weights.h5"), args.overrides
        create_model(args.solver_model, **overrides).save_weights(checkpoint)
        model_dims = create_model(args.solver_model, build=False, **overrides)
        num = args.max_examples or 8
        xs, ys = synthetic_batch(num, num_points, model_dims.point_dim, seed=1,
                                 num_classes=getattr(model_dims, "num_classes", 10))
        data = os.path.join(tmp.name, "smoke.npz")
        pack_npz(xs["points"], xs["mask"], ys, data)
        x, y = unpack_npz(data, num_points)
        out.update(checkpoint="(smoke: untrained tiny model)",
                   data="(smoke: generated clouds)",
                   note="smoke run: untrained tiny model on random clouds; the numbers "
                        "only show that the section runs")
    else:
        raise ValueError("the solvers section needs --checkpoint PATH and --data PATH.")
    out["num_points"] = num_points
    out["num_examples"] = int(len(y))
    try:
        per_sample = {}
        for solver in args.solvers:
            keras.utils.set_random_seed(0)
            entry = guarded(f"solvers {solver}", evaluate_solver, solver, args, checkpoint,
                            x, y, overrides)
            if ok(entry):
                per_sample[solver] = entry.pop("_per_sample")
                print(f"  solvers {solver}: accuracy {entry['accuracy']:.3f}, converged "
                      f"{entry['converged_share']:.0%}, mean evals (converged) "
                      f"{entry['evals_mean_converged']}, {entry['batch_s']:.3g} s per batch",
                      flush=True)
            out["results"][solver] = entry
    finally:
        if tmp is not None:
            tmp.cleanup()
    if "euler" in per_sample and "anderson" in per_sample:
        e, a = per_sample["euler"], per_sample["anderson"]
        both = e["converged"] & a["converged"]
        headline = {"samples_both_converged": int(both.sum()),
                    "euler_converged_share": float(e["converged"].mean()),
                    "anderson_converged_share": float(a["converged"].mean()),
                    "prediction_agreement": float(np.mean(e["pred"] == a["pred"]))}
        if both.any():
            headline["ratio_mean_evals_euler_over_anderson"] = float(
                e["evals"][both].mean() / a["evals"][both].mean())
        headline["meaningful"] = bool(headline["euler_converged_share"] >= 0.5
                                      and headline["anderson_converged_share"] >= 0.5
                                      and both.any())
        if a["converged"].all():
            # Euler's count of a sample that did not converge is the cap, below what it
            # needs; Anderson's counts are exact: the ratio of means is a lower bound.
            headline["ratio_mean_evals_lower_bound"] = float(e["evals"].mean()
                                                             / a["evals"].mean())
        out["euler_vs_anderson"] = headline
    return out


# --------------------------------------------------------------------------- tables


def fmt_s(x):
    if x is None:
        return "-"
    if x < 1e-3:
        return f"{x * 1e6:.0f} us"
    if x < 1:
        return f"{x * 1e3:.3g} ms"
    return f"{x:.3g} s"


def fmt_num(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def cell(entry, fn):
    """A table cell: ``fn(entry)``, "error" for a failed configuration, "-" if absent."""
    if entry is None:
        return "-"
    if isinstance(entry, dict) and "error" in entry:
        return "error (see below)"
    try:
        return fn(entry)
    except (KeyError, TypeError):
        return "-"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run_label(result):
    meta = result.get("meta", {})
    return meta.get("backend", "?") + (" (smoke)" if meta.get("smoke") else "")


def collect_errors(obj, path, errors):
    if isinstance(obj, dict):
        if "error" in obj and isinstance(obj["error"], str):
            errors.append((path, obj["error"]))
            return
        for k, v in obj.items():
            collect_errors(v, f"{path} {k}" if path else str(k), errors)


def format_tables(results):
    """Markdown tables of one or more runs (e.g. one per backend), one column per run."""
    if isinstance(results, dict):
        results = [results]
    labels = [run_label(r) for r in results]
    secs = [r.get("sections", {}) for r in results]
    parts = ["Runs:"]
    for label, r in zip(labels, results):
        m = r.get("meta", {})
        parts.append(f"- {label}: Keras {m.get('keras_version')}, {m.get('backend')} "
                     f"{m.get('backend_version')}, {m.get('device')}, {m.get('date')}"
                     + ("; SMOKE RUN: tiny sizes, numbers not representative"
                        if m.get("smoke") else ""))
        if busy_note(m):
            parts.append(f"  - WARNING: {busy_note(m)}")

    def section_header(name, describe):
        seen = [s[name] for s in secs if isinstance(s.get(name), dict)]
        if not seen:
            return None
        return f"\n### {describe(seen[0])}\n"

    def per_model_rows(section, key, fmt, ratio_label, ratio_key):
        """Rows of a per-model, per-mode section (train, infer) and its ratio row."""
        rows = []
        for name in _ordered(s.get(section, {}).get("models", {}) for s in secs):
            es = [s.get(section, {}).get("models", {}).get(name) for s in secs]
            for mode in MODES:
                rows.append([name, mode] + [
                    cell(e, lambda e: fmt(e["modes"][mode][key])
                         if ok(e["modes"][mode]) else "error (see below)") for e in es])
            rows.append([name, ratio_label] + [
                cell(e, lambda e: fmt_ratio(e.get(ratio_key))) for e in es])
        return rows

    # train
    head = section_header("train", lambda s: (
        f"Training step (s per `train_on_batch`, median of {s.get('repeats')}), batch "
        f"{s.get('batch_size')}, {s.get('flow_steps')} flow steps (tol=0)"))
    if head:
        rows = per_model_rows("train", "step_s", fmt_s, "**reference / default**",
                              "ratio_reference_over_default")
        rows.append(["", "jit_compile (resolved)"] + [
            cell(s.get("train"), lambda t: str(t.get("jit_compile_resolved"))) for s in secs])
        parts += [head, markdown_table(["model", "mode"] + labels, rows)]

    head = section_header("infer", lambda s: (
        f"Inference (clouds per second, `predict_on_batch`, median of {s.get('repeats')}), "
        f"batch {s.get('batch_size')}, {s.get('flow_steps')} flow steps (tol=0)"))
    if head:
        rows = per_model_rows("infer", "clouds_per_s", fmt_num, "**default / reference**",
                              "ratio_default_over_reference")
        parts += [head, markdown_table(["model", "mode"] + labels, rows)]

    head = section_header("jit", lambda s: (
        f"Training step with jit_compile=True vs False: {s.get('model')} {s.get('mode')}, "
        f"batch {s.get('batch_size')}, {s.get('flow_steps')} flow steps"))
    if head:
        rows = []
        for key in ("jit_compile=True", "jit_compile=False"):
            rows.append([key] + [cell(s.get("jit", {}).get("settings", {}).get(key),
                                      lambda e: fmt_s(e["step_s"])) for s in secs])
        rows.append(["**False / True**"] + [
            cell(s.get("jit"), lambda j: fmt_ratio(j.get("ratio_false_over_true"))) for s in secs])
        parts += [head, markdown_table(["setting"] + labels, rows)]

    head = section_header("memory", lambda s: (
        f"Peak memory of one training step (MiB): {s.get('model')}, batch "
        f"{s.get('batch_size')}, flow steps {s.get('steps')} (tol=0)"))
    if head:
        rows = []
        backwards = _ordered(s.get("memory", {}).get("results", {}) for s in secs)
        for bw in backwards:
            rs = [s.get("memory", {}).get("results", {}).get(bw) for s in secs]
            steps = _ordered([k for k in (r or {}) if k.isdigit()] for r in rs)
            for k in sorted(steps, key=int):
                rows.append([bw, f"{k} steps"] + [
                    cell((r or {}).get(k), lambda e: fmt_num(e["peak_mib"], 4)) for r in rs])
            ratio_keys = _ordered([k for k in (r or {}) if k.startswith("ratio_")] for r in rs)
            for rk in ratio_keys:
                hi, lo = rk[len("ratio_"):].split("_over_")
                rows.append([bw, f"**{hi} / {lo}**"] + [
                    cell(r, lambda r: fmt_ratio(r.get(rk))) for r in rs])
        rows.append(["", "method"] + [cell(s.get("memory"), lambda m: str(m.get("method")))
                                      for s in secs])
        parts += [head, markdown_table(["backward", "flow steps"] + labels, rows)]

    head = section_header("solvers", lambda s: (
        f"Solvers in inference: {s.get('solver_model')}, {s.get('num_examples')} test clouds, "
        f"tol {s.get('tol')} ({s.get('stopping')}, per sample), cap {s.get('max_steps')} "
        f"steps, check_every {s.get('check_every')}, Euler eta {s.get('euler_eta')}, batch "
        f"{s.get('batch_size')}" + (f"; {s['note']}" if s.get("note") else "")))
    if head:
        rows = []
        for label, s in zip(labels, secs):
            sv = s.get("solvers")
            if sv is None:
                continue
            if "error" in sv:
                rows.append([label, "-", "error (see below)"] + ["-"] * 6)
                continue
            cap = sv.get("max_steps")
            for solver, e in sv.get("results", {}).items():
                if not ok(e):
                    rows.append([label, solver, "error (see below)"] + ["-"] * 6)
                    continue
                if e["converged_share"] < 0.5:
                    evals = (f"> {cap} (not converged for "
                             f"{1 - e['converged_share']:.0%})")
                else:
                    evals = (f"{fmt_num(e['evals_mean_converged'])} / "
                             f"{fmt_num(e['evals_median_converged'])} / "
                             f"{fmt_num(e['evals_p90_converged'])}")
                rows.append([label, solver, f"{e['accuracy']:.4f}",
                             f"{e['converged_share']:.1%}", evals,
                             f"{e['rel_mmd_final_mean']:.3g}", fmt_s(e["batch_s"]),
                             e.get("evaluations_source", ""), ""])
            h = sv.get("euler_vs_anderson")
            if h:
                if h.get("meaningful"):
                    txt = (f"**{h['ratio_mean_evals_euler_over_anderson']:.2f}x** (over the "
                           f"{h['samples_both_converged']} clouds both converged on)")
                elif h.get("ratio_mean_evals_lower_bound") is not None:
                    txt = (f"**>= {h['ratio_mean_evals_lower_bound']:.0f}x** (lower bound: "
                           f"Euler not converged for {1 - h['euler_converged_share']:.0%} "
                           f"within {cap} steps, Anderson converged for all)")
                else:
                    txt = (f"not meaningful: converged Euler {h['euler_converged_share']:.0%}, "
                           f"Anderson {h['anderson_converged_share']:.0%} (cap {cap})")
                rows.append([label, "**Euler / Anderson evals**", "", "", txt, "", "", "",
                             f"{h['prediction_agreement']:.1%}"])
        parts += [head, markdown_table(
            ["run", "solver", "accuracy", "converged", "evals mean / median / p90 (converged)",
             "mean rel. MMD^2", "s per batch", "evals from", "same prediction"], rows)]

    errors = []
    for label, r in zip(labels, results):
        collect_errors(r.get("sections", {}), label, errors)
    if errors:
        parts.append("\nErrors:")
        parts += [f"- {path}: {msg.splitlines()[0][:300] if msg else ''}"
                  for path, msg in errors]
    return "\n".join(parts)


def _ordered(iterables):
    seen = []
    for it in iterables:
        for k in it or ():
            if k not in seen:
                seen.append(k)
    return seen


# --------------------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    add = parser.add_argument
    add("--sections", default=None,
        help=f"comma list of {','.join(SECTIONS)} (default: all that apply; solvers only "
             "with --checkpoint or --smoke)")
    add("--models", "--model", default="ddeq_mnist,ddeq_modelnet40",
        help="comma list of train/infer models")
    add("--batch-size", type=int, default=None, help="default 64 (smoke 4)")
    add("--num-points", type=int, default=None,
        help="padded cloud length (default: per model, 351 MNIST / 800 ModelNet40; smoke 24)")
    add("--flow-steps", type=int, default=None, help="train/infer/jit flow steps (200; smoke 3)")
    add("--repeats", type=int, default=3, help="timed calls (median reported)")
    add("--jit-model", default="ddeq_mnist")
    add("--jit-timeout", type=float, default=None,
        help="seconds for the torch.compile subprocess (1800; smoke 30)")
    add("--memory-model", default="ddeq_mnist")
    add("--memory-steps", default=None, help="comma list of flow steps (50,500; smoke 3,30)")
    add("--memory-backwards", default="phantom,implicit")
    add("--memory-jobs", type=int, default=None,
        help="memory subprocesses at a time (1; smoke 2)")
    add("--worker-timeout", type=float, default=None,
        help="seconds per memory subprocess (1800; smoke 300)")
    add("--checkpoint", default=None, help=".weights.h5 for the solvers section")
    add("--data", default=None, help="packed .npz or tfds:NAME for the solvers section")
    add("--data-dir", default=None, help="TFDS data_dir for --data tfds:NAME")
    add("--solver-model", default="ddeq_mnist")
    add("--solvers", default="euler,anderson")
    add("--solver-max-steps", type=int, default=None, help="cap (1000; smoke 50)")
    add("--solver-check-every", type=int, default=1,
        help="steps between checks of the stopping rule (1: exact evaluation counts)")
    add("--solver-batch-size", type=int, default=None, help="default 64 (smoke 4)")
    add("--max-examples", type=int, default=None, help="test clouds (default all; smoke 8)")
    add("--euler-eta", type=float, default=5.0)
    add("--smoke", action="store_true", help="tiny sizes, for CI")
    add("--output", default=None, help="write the results as JSON here")
    add("--table-only", nargs="+", default=None, metavar="JSON",
        help="print the combined table of saved result files and exit")
    add("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, (full, smoke) in SIZE_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, smoke if args.smoke else full)
    args.overrides = dict(SMOKE_OVERRIDES) if args.smoke else {}
    args.models = [m for m in args.models.split(",") if m]
    args.memory_backwards = [b for b in args.memory_backwards.split(",") if b]
    args.solvers = [s for s in args.solvers.split(",") if s]
    if args.sections is None:
        args.sections = [s for s in SECTIONS
                         if s != "solvers" or args.checkpoint or args.smoke]
    else:
        args.sections = [s for s in args.sections.split(",") if s]
        unknown = set(args.sections) - set(SECTIONS)
        if unknown:
            parser.error(f"unknown sections {sorted(unknown)}; known: {SECTIONS}")
    return args


def json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def main(argv=None):
    args = parse_args(argv)
    if args.table_only:
        runs = []
        for path in args.table_only:
            with open(path) as f:
                runs.append(json.load(f))
        table = format_tables(runs)
        print(table)
        return {"runs": runs, "table": table}
    if args.worker:
        result = guarded("worker", run_worker, json.loads(args.worker))
        print(WORKER_MARK + json.dumps(result, default=json_default), flush=True)
        return result

    import keras

    keras.utils.set_random_seed(0)  # entry point
    start = time.perf_counter()
    meta = machine_info()
    meta.update(smoke=args.smoke, argv=list(sys.argv[1:] if argv is None else argv),
                sections=args.sections, overrides=args.overrides,
                cpu_busy_at_start=cpu_busy_fraction())
    print(f"Benchmark on {meta['backend']} (Keras {meta['keras_version']}), "
          f"{meta['device']}, {meta['date']}" + (" [smoke]" if args.smoke else ""), flush=True)
    results = {"meta": meta, "sections": {}}
    cache = ModelCache(args)
    runners = {"train": lambda: section_train(args, cache),
               "infer": lambda: section_infer(args, cache),
               "jit": lambda: section_jit(args, cache),
               "memory": lambda: section_memory(args),
               "solvers": lambda: section_solvers(args)}
    for name in SECTIONS:
        if name not in args.sections:
            continue
        if name in ("memory", "solvers"):
            cache.clear()  # free the compiled models of the earlier sections
        print(f"[{name}]", flush=True)
        section_start = time.perf_counter()
        results["sections"][name] = guarded(name, runners[name])
        results["sections"][name]["section_wall_s"] = time.perf_counter() - section_start
    cache.clear()
    meta["wall_s"] = time.perf_counter() - start
    meta["load_average_end"] = load_average()
    meta["cpu_busy_at_end"] = cpu_busy_fraction()
    results["table"] = format_tables(results)
    print()
    print(results["table"])
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2, default=json_default)
    return results


if __name__ == "__main__":
    main()
