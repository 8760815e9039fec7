"""Runs the input properties with many examples and prints what they found.

Usage (from the repository root, one backend per run)::

    KERAS_BACKEND=jax python -m tests.property_check --profile large
    KERAS_BACKEND=torch python -m tests.property_check --only valid:ddeq_mnist

The properties are those of `tests/test_input_properties.py` (defined in
`property_checks.py`); ``--profile large`` runs about 6,000 examples per
backend (`property_models.PROFILES`), ``--profile ci`` the pytest run's few.
It prints, per property and model, the examples run, the failures (each with
hypothesis's falsifying example and its reproduce blob), and the solver
result codes the DDEQ examples met; it exits 1 if any property failed.
``--threads 1`` (default) keeps each backend on one CPU thread, which is also
much faster for these tiny models on a busy machine.
"""

import argparse
import os
import sys
import time
import traceback


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="large", choices=["ci", "large"])
    parser.add_argument("--only", action="append", default=[],
                        help="PROPERTY or PROPERTY:MODEL (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per backend")
    parser.add_argument("--examples", type=float, default=1.0,
                        help="multiply the profile's example counts")
    return parser.parse_args()


def _limit_threads(n):
    # Read by the backends when they start: set before anything imports them.
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(n))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(n))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if n == 1:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                           "intra_op_parallelism_threads=1")


def _hypothesis_check(prop, name, profile_settings, given, st):
    """The property for one model as a hypothesis test (no defaults allowed)."""
    @profile_settings
    @given(data=st.data())
    def check(data):
        prop(name, data)

    return check


def _selected(prop, name, only):
    if not only:
        return True
    return any(o == prop or o == f"{prop}:{name}" for o in only)


def main():
    args = _parse()
    os.environ["DDEQ_PROPERTY_PROFILE"] = args.profile
    _limit_threads(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import warnings

    warnings.filterwarnings("ignore")
    import keras
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from property_checks import COUNTS, PROPERTIES, WORST, cases
    from property_models import DDEQ, MODELS, profile

    prof = profile()
    print(f"backend={keras.config.backend()} profile={args.profile}", flush=True)
    rows, failures, start = [], [], time.perf_counter()
    for prop, name in cases(MODELS, DDEQ):
        if not _selected(prop, name, args.only):
            continue
        examples = max(1, int(prof.examples[prop] * args.examples))

        # No shrinking: a large DDEQ example takes seconds, and shrinking one
        # failure took 7 minutes; the failing example is printed as drawn.
        check = _hypothesis_check(PROPERTIES[prop], name, settings(
            max_examples=examples, deadline=None, database=None,
            derandomize=prof.derandomize, print_blob=True,
            phases=[p for p in Phase if p is not Phase.shrink],
            suppress_health_check=list(HealthCheck)), given, st)

        label = f"{prop}:{name or 'preprocessor'}"
        began = time.perf_counter()
        try:
            check()
            failed = 0
        except Exception as error:  # a falsified property: record it, go on
            failed = 1
            failures.append((label, "".join(traceback.format_exception(error))[-4000:]))
        count = COUNTS[(prop, name or "-", "examples")]
        rows.append((label, count, failed, time.perf_counter() - began))
        print(f"{label:45s} examples={count:6d} failed={failed} "
              f"{time.perf_counter() - began:7.1f}s", flush=True)
    total = sum(r[1] for r in rows)
    print(f"\nTOTAL examples={total} properties={len(rows)} failed={len(failures)} "
          f"time={time.perf_counter() - start:.0f}s")
    extra = sorted((k, v) for k, v in COUNTS.items() if k[2] != "examples")
    if extra:
        print("\nDetails (solver result codes, compared / not converged pairs, corruptions):")
        for (prop, name, what), value in extra:
            print(f"  {prop:12s} {name:28s} {what:28s} {value}")
    if WORST:
        print("\nLargest difference between runs that must agree, as a share of the tolerance:")
        for (name, _), value in sorted(WORST.items()):
            print(f"  {name:28s} {value:.3g}")
    for label, text in failures:
        print(f"\n===== FAILED {label} =====\n{text}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
