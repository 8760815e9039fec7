"""Run the whole test suite once per Keras backend, each in its own process.

Usage: python tests/run_all_backends.py [pytest args...]
Exits non-zero if any backend fails, after running all of them.
"""

import os
import subprocess
import sys
import time

BACKENDS = ("jax", "tensorflow", "torch")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    results = {}
    for backend in BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
        start = time.perf_counter()
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", here, *sys.argv[1:]],
            cwd=root,
            env=env,
        )
        results[backend] = (code, time.perf_counter() - start)
    print("\n===== summary =====")
    for backend, (code, seconds) in results.items():
        print(f"{backend:>10}: {'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    sys.exit(0 if all(code == 0 for code, _ in results.values()) else 1)


if __name__ == "__main__":
    main()
