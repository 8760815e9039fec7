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
  Prints reference/default. Then, for each model, the training solvers of
  ``--train-solvers``: ``euler`` (the authors' flow: eta 5, ``--flow-steps`` steps, their
  rule rel MMD^2 < 1e-4 checked every 100 steps) and ``anderson`` (to the same tolerance,
  checked every step, at most ``--anderson-max-steps``), each with seconds per step, map
  evaluations per sample and the share of samples converged in the last timed step, and
  the ratio euler/anderson of seconds per step. Models are compiled with
  ``model.compile()`` (Keras's ``jit_compile="auto"``: XLA on JAX, no XLA on TensorFlow
  on CPU, eager on torch); the resolved setting is recorded.
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
  memory analysis is recorded too). The method is recorded. Then, under
  ``training_steps``, one full-size training step of each model of
  ``--memory-train-models`` (default ``ddeq_modelnet40`` at 1,024 points and
  ``ddeq_mnist_completion`` at 351, the models' own padded lengths): Anderson,
  ``max_steps=--memory-train-steps`` (20), ``tol=0``, phantom backward, at ``--batch-size``;
  seconds of the step and peak memory as above, each in a fresh subprocess. A step that
  fails (out of memory) is recorded as an error.
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
import json
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    # Run as a script (``python training/benchmark.py``): make ``training`` importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.bench.core import MODES, SECTIONS, SIZE_DEFAULTS, SMOKE_OVERRIDES, ModelCache, guarded
from training.bench.data import pack_npz, unpack_npz  # noqa: F401  (the --data format)
from training.bench.machine import cpu_busy_fraction, load_average, machine_info
from training.bench.sections import section_infer, section_jit, section_memory, section_train
from training.bench.solvers import section_solvers
from training.bench.tables import format_tables
from training.bench.worker import WORKER_MARK, run_worker


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
        help="padded cloud length (default: per model, 351 MNIST / 1024 ModelNet40; smoke 24)")
    add("--flow-steps", type=int, default=None, help="train/infer/jit flow steps (200; smoke 3)")
    add("--repeats", type=int, default=3, help="timed calls (median reported); 0: only the first call, "
                                           "compilation included, is timed")
    add("--train-modes", default="default,reference",
        help="comma list of the train section's modes (\"\": only the training solvers)")
    add("--train-solvers", default="euler,anderson",
        help="comma list of training solvers the train section compares")
    add("--anderson-max-steps", type=int, default=None,
        help="cap of the Anderson training solver (50; smoke 3)")
    add("--jit-model", default="ddeq_mnist")
    add("--jit-timeout", type=float, default=None,
        help="seconds for the torch.compile subprocess (1800; smoke 30)")
    add("--memory-model", default="ddeq_mnist")
    add("--memory-steps", default=None, help="comma list of flow steps (50,500; smoke 3,30)")
    add("--memory-backwards", default="phantom,implicit")
    add("--memory-train-models", default=None,
        help="comma list of models whose full-size training step the memory section "
             "measures (ddeq_modelnet40,ddeq_mnist_completion; smoke: none)")
    add("--memory-train-steps", type=int, default=20,
        help="Anderson steps of those training steps (tol=0)")
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
    add("--data-parallel", action="store_true",
        help="train and infer with keras.distribution.DataParallel over all devices (JAX "
             "only; on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes "
             "N host devices, which XLA runs on threads of their own)")
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
    if args.memory_train_models is None:  # smoke: keep CI short
        args.memory_train_models = "" if args.smoke else "ddeq_modelnet40,ddeq_mnist_completion"
    args.memory_train_models = [m for m in args.memory_train_models.split(",") if m]
    args.solvers = [s for s in args.solvers.split(",") if s]
    args.train_solvers = [s for s in args.train_solvers.split(",") if s]
    args.train_modes = [m for m in args.train_modes.split(",") if m]
    unknown = set(args.train_modes) - set(MODES)
    if unknown:
        parser.error(f"unknown --train-modes {sorted(unknown)}; known: {list(MODES)}")
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
    from training.session import set_up_distribution

    devices = set_up_distribution(args.data_parallel)  # before any Keras variable exists
    start = time.perf_counter()
    meta = machine_info()
    meta["data_parallel_devices"] = devices
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
