"""Run the whole test suite once per Keras backend, each in its own process.

Usage: python tests/run_all_backends.py [pytest args...]
Exits non-zero if any backend fails, after running all of them.

With pytest-xdist installed (the ``dev`` extra), each backend's suite runs in
as many worker processes as there are usable CPUs (at most 4; override with
``-n N``, ``-n 0`` for one process), a test file per worker at a time
(``--dist loadfile``), so module fixtures are built once. Most tests are bound
by one thread (tracing, compiling, small ops), which leaves a second core idle.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import time

BACKENDS = ("jax", "tensorflow", "torch")


def _parallel_args(args):
    """``-n W --dist loadfile`` unless the caller chose, or xdist is missing."""
    if importlib.util.find_spec("xdist") is None or any(
            a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args):
        return []
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    workers = min(cpus, 4)
    return ["-n", str(workers), "--dist", "loadfile"] if workers > 1 else []


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    results = {}
    for backend in BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        parallel = _parallel_args(sys.argv[1:])
        if parallel and backend == "torch":
            # One thread per worker: PyTorch's threads slow down many times when
            # they outnumber the free cores (its suite on 2 cores: 423 s with 2
            # workers of 2 threads, 186 s with 1 thread each).
            env.setdefault("OMP_NUM_THREADS", "1")
        cache = None
        if backend == "jax" and "JAX_COMPILATION_CACHE_DIR" not in env:
            # Compiling XLA programs is most of the JAX suite's time, and many tests
            # build the same tiny models: a persistent compilation cache, fresh for
            # this run (nothing carries over between runs), shared by the workers.
            # A size limit makes JAX lock the cache between processes.
            cache = tempfile.TemporaryDirectory(prefix="ddeq-jax-cache-")
            env.update(JAX_COMPILATION_CACHE_DIR=cache.name,
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
                       JAX_COMPILATION_CACHE_MAX_SIZE=str(8 << 30))
        print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
        start = time.perf_counter()
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", here,
             *parallel, *sys.argv[1:]],
            cwd=root,
            env=env,
        )
        results[backend] = (code, time.perf_counter() - start)
        if cache is not None:
            cache.cleanup()
    print("\n===== summary =====")
    for backend, (code, seconds) in results.items():
        print(f"{backend:>10}: {'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    sys.exit(0 if all(code == 0 for code, _ in results.values()) else 1)


if __name__ == "__main__":
    main()
