"""Time DDEQ training steps and inference on the backend named by KERAS_BACKEND.

Measures, in one run, the training step of a named configuration with the x-only work
done once per forward pass (default) and redone at every flow step (the authors'
semantics), and prints the ratio. Synthetic clouds with the shapes of the real data
(MNIST: 351 padded points, 150 valid on average) are used: timing does not depend on
the values.

Examples:
    KERAS_BACKEND=jax python training/benchmark.py --model ddeq_mnist --batch-size 64
    KERAS_BACKEND=torch python training/benchmark.py --smoke   # tiny, seconds
"""

import argparse
import json
import os
import platform
import time

import keras
import numpy as np


def synthetic_batch(batch_size, num_points, point_dim, seed=0):
    rng = np.random.default_rng(seed)
    valid = rng.integers(num_points // 4, num_points + 1, batch_size)
    mask = np.arange(num_points)[None, :] < valid[:, None]
    points = rng.normal(size=(batch_size, num_points, point_dim)).astype("float32")
    points = np.where(mask[..., None], points, 0).astype("float32")
    labels = rng.integers(0, 10, batch_size).astype("int32")
    return {"points": points, "mask": mask}, labels


def time_train_step(model, x, y, repeats):
    """Seconds per `train_on_batch`, after one untimed call (compilation, building)."""
    start = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return {"first_call_s": first, "step_s": float(np.median(times)), "steps_timed": repeats}


def main(argv=None):
    from ddeq_keras.models import create_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ddeq_mnist")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-points", type=int, default=351)
    parser.add_argument("--flow-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", default="hoisted,per_step",
                        help="comma list: hoisted (x-work once), per_step (x-work every step)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    overrides = {}
    if args.smoke:
        args.batch_size, args.num_points, args.flow_steps = 4, 24, 3
        overrides = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=32)

    keras.utils.set_random_seed(0)  # entry point
    results = {"backend": keras.config.backend(), "model": args.model,
               "batch_size": args.batch_size, "num_points": args.num_points,
               "flow_steps": args.flow_steps, "machine": f"{platform.machine()}, "
               f"{os.cpu_count()} CPUs", "modes": {}}
    for mode in args.modes.split(","):
        # tol=0: exactly flow_steps Euler steps, so both modes do the same flow work.
        model = create_model(args.model, max_steps=args.flow_steps, tol=0.0,
                             check_every=args.flow_steps,
                             precompute_context=(mode == "hoisted"), **overrides)
        model.compile()
        x, y = synthetic_batch(args.batch_size, args.num_points, model.point_dim)
        results["modes"][mode] = time_train_step(model, x, y, args.repeats)
        print(f"[{results['backend']}] {mode:>8}: {results['modes'][mode]['step_s']:.2f} s per "
              f"training step (first call {results['modes'][mode]['first_call_s']:.1f} s)",
              flush=True)
    if {"hoisted", "per_step"} <= set(results["modes"]):
        ratio = results["modes"]["per_step"]["step_s"] / results["modes"]["hoisted"]["step_s"]
        results["speedup_hoisting"] = ratio
        print(f"[{results['backend']}] x-work once per forward pass vs every flow step: "
              f"{ratio:.1f}x faster")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
