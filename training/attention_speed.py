"""Training-step time of a DDEQ with and without the sliced attention path, one run.

The two models (same weights) are traced one with the backend's attention policy and
one with slicing turned off (`ddeq_keras.backend.attention_policy.override_policy`),
then timed alternately in this process (after one untimed step each), so a busy
machine slows both alike; prints the medians and their ratio, and writes JSON.

Example (from the repository root)::

    KERAS_BACKEND=jax python -m training.attention_speed --model ddeq_mnist \\
        --solver anderson --repeats 5 --output docs/bench/attention_speed_jax.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

SOLVERS = {"anderson": dict(solver="anderson", max_steps=50, tol=1e-4),
           "euler": dict(solver="euler", max_steps=200, tol=0.0)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ddeq_mnist")
    parser.add_argument("--solver", choices=sorted(SOLVERS), default="anderson")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-points", type=int, default=351)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a configuration override (JSON value), e.g. latent_dim=16")
    parser.add_argument("--output", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import keras

    from ddeq_keras.backend.attention_policy import attention_policy, override_policy
    from ddeq_keras.models import create_model
    from training.bench.core import model_batch, training_targets
    from training.bench.machine import machine_info

    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.model_option)}
    models, policies, first_loss = {}, {}, {}
    for name, fields in (("sliced", {}), ("not sliced", {"slice_group_elements": None})):
        keras.utils.set_random_seed(0)  # entry point: the same weights for both
        model = create_model(args.model, **{**SOLVERS[args.solver], **options})
        model.compile()
        x, y = model_batch(model, args.batch_size, args.num_points)
        y = training_targets(model, x, y)
        with override_policy(**fields):
            policies[name] = attention_policy()._asdict()
            # Traced (and run once, untimed) under this policy; the same weights and
            # batch, so both first losses agree to float32 rounding.
            first_loss[name] = float(np.ravel(model.train_on_batch(x, y))[0])
        models[name] = model
    seconds = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            seconds[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(t)) for name, t in seconds.items()}
    ratio = medians["sliced"] / medians["not sliced"]
    for name in models:
        print(f"{keras.config.backend()} {args.model} {args.solver}: {name}: "
              f"{medians[name]:.3f} s per step (median of {args.repeats})")
    print(f"sliced / not sliced: {ratio:.2f}x; first steps' losses "
          f"{first_loss['sliced']:.6g} / {first_loss['not sliced']:.6g}")
    if not policies["sliced"]["slice_group_elements"]:
        print(f"(the {keras.config.backend()} backend does not slice: both are one path)")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"backend": keras.config.backend(), "model": args.model,
                       "solver": args.solver, "batch_size": args.batch_size,
                       "num_points": args.num_points, "model_options": options,
                       "policies": policies, "first_step_loss": first_loss,
                       "seconds": seconds, "medians": medians,
                       "sliced_over_not_sliced": ratio, "machine": machine_info()},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
