"""The ``train``, ``infer``, ``jit`` and ``memory`` sections of the benchmark.

Each takes the parsed command line (``args``) and returns the section's JSON
entry; a configuration that fails is recorded as ``{"error": ...}`` and the
others go on. See ``training/benchmark.py`` for what each section measures.
"""

import os
import sys

from training.bench.core import (
    MODES,
    TRAIN_SOLVERS,  # noqa: F401  (the choices of --train-solvers)
    batch_for,
    guarded,
    guarded_logged,
    log_entry,
    measure_train,
    mode_kwargs,
    model_summary,
    ok,
    padded_length,
    set_ratio,
    time_calls,
    train_solver_kwargs,
)
from training.bench.machine import accelerator, usable_cpus
from training.bench.worker import run_worker_subprocess


def worker_config(args, task, model, kwargs, num_points, jit_compile, repeats):
    """The configuration that `run_worker` measures in a fresh process."""
    return dict(task=task, model=model, kwargs=kwargs, overrides=args.overrides,
                batch_size=args.batch_size, num_points=num_points, jit_compile=jit_compile,
                repeats=repeats)


def _per_model_modes(args, cache, section, measure, key, unit, ratio, head=None, modes=MODES):
    """``{name: {**head(name), "modes": {mode: measure(model, name)}, field: ratio}}``
    for every model of ``--models``; ``ratio`` is ``(field, numerator mode,
    denominator mode)`` of ``key``."""
    models = {}
    for name in args.models:
        entry = head(name) if head else {}
        entry["modes"] = {}
        for mode in modes:
            def run(name=name, mode=mode):
                return measure(cache.get(name, mode), name)

            entry["modes"][mode] = guarded_logged(f"{section} {name} {mode}", run, section,
                                                  name, mode, key, unit)
        set_ratio(entry, ratio[0], entry["modes"], ratio[1], ratio[2], key)
        models[name] = entry
    return models


def section_train(args, cache):
    out = {"compile": "model.compile() (jit_compile='auto')", "batch_size": args.batch_size,
           "flow_steps": args.flow_steps, "repeats": args.repeats}

    def measure(model, name):
        x, y = batch_for(args, name, model)
        result = measure_train(model, x, y, args.repeats)
        result["config"] = model_summary(model)
        return result

    def head(name):
        return {"num_points": guarded(f"train {name}", padded_length, name, args.num_points)}

    out["models"] = _per_model_modes(
        args, cache, "train", measure, "step_s", "s per step",
        ("ratio_reference_over_default", "reference", "default"), head,
        modes=args.train_modes)
    for name in args.models:
        entry = out["models"][name]
        entry["solvers"] = {}
        for solver in args.train_solvers:
            def run(name=name, solver=solver):
                return measure(cache.get(name, f"solver:{solver}"), name)

            entry["solvers"][solver] = guarded_logged(
                f"train {name} {solver}", run, "train", name, solver, "step_s", "s per step")
        set_ratio(entry, "ratio_euler_over_anderson", entry["solvers"], "euler", "anderson",
                  "step_s")
        cache.drop(name, prefix="solver:")
    out["solver_settings"] = {s: guarded(s, train_solver_kwargs, s, args)
                              for s in args.train_solvers}
    resolved = {m["config"]["jit_compile"] for e in out["models"].values()
                for m in [*e["modes"].values(), *e["solvers"].values()] if ok(m)}
    out["jit_compile_resolved"] = sorted(resolved)[0] if len(resolved) == 1 else sorted(resolved)
    return out


def section_infer(args, cache):
    out = {"method": "model.predict_on_batch (compiled predict function: jax.jit on JAX, "
                     "tf.function on TensorFlow, eager on torch)",
           "batch_size": args.batch_size, "flow_steps": args.flow_steps,
           "repeats": args.repeats}

    def measure(model, name):
        x, _ = batch_for(args, name, model)
        timing = time_calls(lambda: model.predict_on_batch(x), args.repeats)
        return {"clouds_per_s": args.batch_size / timing["median_s"],
                "batch_s": timing["median_s"], "first_call_s": timing["first_call_s"],
                "times_s": timing["times_s"],
                "jit_compile": getattr(model, "jit_compile", None)}

    out["models"] = _per_model_modes(
        args, cache, "infer", measure, "clouds_per_s", "clouds/s",
        ("ratio_default_over_reference", "default", "reference"))
    return out


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
            cfg = worker_config(args, "train_step", name, mode_kwargs(mode, args.flow_steps),
                                padded_length(name, args.num_points), jit_compile=True,
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

        out["settings"][key] = guarded_logged(f"jit {key}", run, "jit", name, key, "step_s",
                                              "s per step")
    set_ratio(out, "ratio_false_over_true", out["settings"], "jit_compile=False",
              "jit_compile=True", "step_s")
    if backend == "torch":
        out["note"] = "jit_compile=True is torch.compile inside Keras"
    return out


def memory_jobs(args):
    """The memory section's configurations: ``[(key, cfg)]`` with ``key`` either
    ``("flow", backward, k)`` (``--memory-model`` at ``k`` flow steps) or
    ``("train_step", model)`` (one full-size training step of a model of
    ``--memory-train-models``: Anderson, ``--memory-train-steps`` steps, phantom
    backward, at the model's own padded length unless ``--num-points``)."""
    steps = [int(s) for s in str(args.memory_steps).split(",") if s.strip()]
    num_points = guarded("memory", padded_length, args.memory_model, args.num_points)
    jobs = []
    for backward in args.memory_backwards:
        for k in steps:
            cfg = worker_config(args, "memory", args.memory_model,
                                dict(max_steps=k, tol=0.0, backward=backward),
                                num_points, jit_compile="auto", repeats=1)
            jobs.append((("flow", backward, k), cfg))
    for name in args.memory_train_models:
        kwargs = dict(solver="anderson", max_steps=args.memory_train_steps, tol=0.0,
                      backward="phantom")
        cfg = worker_config(args, "memory", name, kwargs,
                            guarded("memory", padded_length, name, args.num_points),
                            jit_compile="auto", repeats=1)
        jobs.append((("train_step", name), cfg))
    return steps, num_points, jobs


def section_memory(args):
    steps, num_points, jobs = memory_jobs(args)
    out = {"model": args.memory_model, "batch_size": args.batch_size,
           "num_points": num_points,
           "steps": steps, "backwards": list(args.memory_backwards),
           "isolation": "one fresh subprocess per measurement", "jobs": args.memory_jobs,
           "results": {backward: {} for backward in args.memory_backwards}}
    if args.memory_train_models:
        # Peak memory and seconds of one training step of each model at full size
        # (what must fit a 24 GB CPU machine, issue 10).
        out["training_steps"] = {"solver": "anderson", "max_steps": args.memory_train_steps,
                                 "tol": 0.0, "backward": "phantom", "models": {}}

    extra_env = {}
    if args.memory_jobs > 1 and accelerator() is None and "OMP_NUM_THREADS" not in os.environ:
        # Parallel workers on CPU: split the cores (torch slows down many times when its
        # threads outnumber the free cores). Affects the step time, not the memory.
        usable = usable_cpus() or 1
        extra_env["OMP_NUM_THREADS"] = str(max(1, usable // args.memory_jobs))
    out["worker_env"] = extra_env

    def run(job):
        key, cfg = job
        if not isinstance(cfg["num_points"], int):
            return key, cfg["num_points"]
        return key, run_worker_subprocess(cfg, args.worker_timeout, extra_env)

    if args.memory_jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.memory_jobs) as pool:
            finished = list(pool.map(run, jobs))
    else:
        finished = [run(job) for job in jobs]
    methods = set()
    for key, entry in finished:
        if key[0] == "flow":
            _, backward, k = key
            out["results"][backward][str(k)] = entry
            label = f"{backward} {k} steps"
        else:
            out["training_steps"]["models"][key[1]] = entry
            label = f"training step {key[1]} ({entry.get('config', {}).get('max_steps')} steps)"
        if ok(entry):
            methods.add(entry["method"])
            print(f"  memory {label}: {entry['peak_mib']:.1f} MiB, {entry['step_s']:.2f} s",
                  flush=True)
        else:
            print(f"  memory {label}: FAILED: {entry['error'][:300]}", file=sys.stderr,
                  flush=True)
    out["method"] = sorted(methods)[0] if len(methods) == 1 else sorted(methods)
    lo, hi = (str(min(steps)), str(max(steps))) if steps else (None, None)
    for backward in args.memory_backwards:
        res = out["results"][backward]
        if lo != hi and ok(res.get(lo)) and ok(res.get(hi)) and res[lo]["peak_mib"] > 0:
            res[f"ratio_{hi}_over_{lo}"] = res[hi]["peak_mib"] / res[lo]["peak_mib"]
    return out
