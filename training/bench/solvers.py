"""The ``solvers`` section: Euler vs Anderson on a trained checkpoint, in inference.

For each solver: accuracy, map evaluations per sample until the stopping rule
was met, share converged, final relative MMD^2, wall time per batch; then the
ratio of evaluations Euler/Anderson (see ``training/benchmark.py``).
"""

import os
import tempfile
import time

import numpy as np

from training.bench.core import guarded, model_batch, model_summary, ok, padded_length
from training.bench.data import batches, load_tfds, pack_npz, unpack_npz


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
        xs, ys = model_batch(model_dims, args.max_examples or 8, num_points, seed=1)
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
