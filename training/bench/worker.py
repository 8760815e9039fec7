"""One benchmark configuration measured in a fresh Python process.

`run_worker_subprocess` starts ``training/benchmark.py --worker CFG`` (which
calls `run_worker`) and reads its result from the line marked `WORKER_MARK`:
a fresh process gives honest peak-memory figures and isolates torch.compile.
"""

import json
import os
import signal
import subprocess
import sys
import time

from training.bench.core import (
    MIB,
    error_entry,
    guarded,
    measure_train,
    model_batch,
    model_summary,
    ok,
    training_targets,
)
from training.bench.memory import (
    PeakRSS,
    finished_train_step,
    gpu_memory_probe,
    lifetime_peak_rss_mib,
    release_free_heap,
    rss_mib,
    xla_step_memory,
)

WORKER_MARK = "@@BENCHMARK_RESULT@@"
# The command line, which runs `run_worker` for ``--worker``.
BENCHMARK_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmark.py"
)


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
    x, y = model_batch(model, cfg["batch_size"], cfg["num_points"])
    y = training_targets(model, x, y)
    rss_built = rss_mib()
    if cfg["task"] == "train_step":
        result = measure_train(model, x, y, cfg["repeats"])
        result["jit_compile"] = getattr(model, "jit_compile", None)
        return result

    start = time.perf_counter()
    finished_train_step(model, x, y)  # warm-up: compilation
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
        finished_train_step(model, x, y)
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
        finished_train_step(model, x, y)
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


def worker_env(extra=None):
    import keras

    env = dict(os.environ, **(extra or {}))
    env["KERAS_BACKEND"] = keras.config.backend()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    command = [sys.executable, BENCHMARK_SCRIPT, "--worker", json.dumps(cfg)]
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
