"""Wall time to a test accuracy on real MNIST point clouds: Euler-200 vs Anderson.

``run``: trains `ddeq_mnist` (the authors' configuration, Adam 1e-3, batch 64, seed 42)
with one training solver, evaluating on a fixed test subset every ``--eval-every``
seconds of *training* time (evaluation time is not counted), until the accuracy reaches
``--target`` or the training time passes ``--budget`` minutes. Each model is evaluated
with the solver it trains with. Writes one JSON (the curve, the time the target was
reached or ``null``, the settings and the machine).

``plot``: both curves (accuracy vs training wall time) in one PNG, and one line per run.

The solvers are the benchmark's (`training.bench.core.train_solver_kwargs`):
``euler``, the authors' flow (eta 5, 200 steps, their rule rel MMD^2 < 1e-4 checked
every 100 steps) and ``anderson`` (to rel MMD^2 1e-4 checked every step, at most 50).

Usage (from the repository root; run the two one after the other on the same cores):

    KERAS_BACKEND=tensorflow taskset -c 1 python -m training.time_to_accuracy run \\
        --solver anderson --data-dir /tmp/tfds --out docs/bench/tta_anderson.json
    KERAS_BACKEND=tensorflow taskset -c 1 python -m training.time_to_accuracy run \\
        --solver euler --data-dir /tmp/tfds --out docs/bench/tta_euler.json
    python -m training.time_to_accuracy plot docs/bench/tta_anderson.json \\
        docs/bench/tta_euler.json --png docs/bench/time_to_accuracy.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _write(path, record):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)  # a reader never sees half a file


def run(args):
    import keras

    keras.utils.set_random_seed(args.seed)  # an entry point
    import ddeq_keras.datasets as dd
    from ddeq_keras.models import create_model
    from training.bench.core import train_solver_kwargs
    from training.bench.machine import machine_info
    from training.recipes import Recipe, apply_settings

    solver_args = argparse.Namespace(flow_steps=args.flow_steps, anderson_max_steps=50)
    solver = train_solver_kwargs(args.solver, solver_args)
    overrides = dict(apply_settings(Recipe("ddeq_mnist", "mnist_point_cloud"),
                                    [f"model.{s}" for s in args.set]).model_overrides)
    train = dd.make_pipeline("mnist_point_cloud", "train", num_points=args.num_points,
                             batch_size=args.batch_size, shuffle=True, seed=args.seed,
                             data_dir=args.data_dir, drop_remainder=True)
    test = dd.make_pipeline("mnist_point_cloud", f"test[:{args.test}]",
                            num_points=args.num_points, batch_size=250, data_dir=args.data_dir)
    model = create_model("ddeq_mnist", build=False, seed=args.seed, **{**solver, **overrides})
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))

    record = {"solver": args.solver, "solver_settings": solver, "model_overrides": overrides,
              "backend": keras.config.backend(), "target_accuracy": args.target,
              "test_split": f"test[:{args.test}]", "batch_size": args.batch_size,
              "learning_rate": args.learning_rate, "seed": args.seed,
              "budget_minutes": args.budget, "eval_every_s": args.eval_every,
              "machine": machine_info(), "command": "python -m training.time_to_accuracy "
              + " ".join(sys.argv[1:]), "curve": [], "reached_at_s": None,
              "reached_at_step": None}

    def evaluate(train_s, steps):
        logs = model.evaluate(test, verbose=0, return_dict=True)
        point = {"train_s": round(train_s, 1), "steps": steps,
                 **{k: round(float(v), 4) for k, v in logs.items()}}
        record["curve"].append(point)
        print(json.dumps(point), flush=True)
        _write(args.out, record)
        return point["accuracy"]

    train_s, steps, last_eval = 0.0, 0, 0.0
    evaluate(0.0, 0)
    while True:  # epochs; the pipeline reshuffles at every pass
        for x, y in train.as_numpy_iterator():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            train_s += time.perf_counter() - start
            steps += 1
            if train_s - last_eval < args.eval_every and train_s < args.budget * 60:
                continue
            last_eval = train_s
            if evaluate(train_s, steps) >= args.target:
                record["reached_at_s"], record["reached_at_step"] = round(train_s, 1), steps
            if record["reached_at_s"] is not None or train_s >= args.budget * 60:
                record["finished"] = "target reached" if record["reached_at_s"] else \
                    f"budget of {args.budget} min spent"
                _write(args.out, record)
                print(record["finished"], flush=True)
                return record


def plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(Path(p).read_text()) for p in args.runs]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for rec in runs:
        minutes = [p["train_s"] / 60 for p in rec["curve"]]
        acc = [100 * p["accuracy"] for p in rec["curve"]]
        reached = (f"{rec['target_accuracy']:.0%} at {rec['reached_at_s'] / 60:.1f} min"
                   if rec["reached_at_s"] is not None else
                   f"{rec['target_accuracy']:.0%} not reached in {rec['budget_minutes']:g} min")
        label = {"euler": "Euler, 200 steps", "anderson": "Anderson to rel 1e-4"}.get(
            rec["solver"], rec["solver"])
        ax.plot(minutes, acc, marker="o", ms=3, label=f"{label} ({reached})")
        print(f"{rec['solver']}: {reached}; last point {rec['curve'][-1]}")
    target = 100 * runs[0]["target_accuracy"]
    ax.axhline(target, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("training wall time (min, evaluation excluded)")
    ax.set_ylabel(f"accuracy on MNIST {runs[0]['test_split']} (%)")
    ax.set_title(f"ddeq_mnist, batch {runs[0]['batch_size']}, {runs[0]['backend']}, "
                 f"{runs[0]['machine'].get('cpus_usable', '?')} CPU core(s)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.png}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train with one solver, record the accuracy curve")
    r.add_argument("--solver", required=True, choices=["euler", "anderson"])
    r.add_argument("--data-dir", required=True, help="TFDS data_dir (prepared MNIST)")
    r.add_argument("--out", required=True, help="JSON to write (rewritten at each point)")
    r.add_argument("--target", type=float, default=0.9)
    r.add_argument("--budget", type=float, default=60.0, help="minutes of training time")
    r.add_argument("--eval-every", type=float, default=120.0,
                   help="seconds of training time between evaluations")
    r.add_argument("--test", type=int, default=2000, help="first N test clouds")
    r.add_argument("--flow-steps", type=int, default=200, help="Euler steps")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--num-points", type=int, default=351, help="padded cloud length")
    r.add_argument("--set", action="append", default=[], metavar="ARG=VALUE",
                   help="a create_model argument of ddeq_mnist (tests: a tiny model)")
    r.add_argument("--learning-rate", type=float, default=1e-3)
    r.add_argument("--seed", type=int, default=42)
    p = sub.add_parser("plot", help="both curves in one PNG")
    p.add_argument("runs", nargs="+")
    p.add_argument("--png", required=True)
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else plot(args)


if __name__ == "__main__":
    main()
