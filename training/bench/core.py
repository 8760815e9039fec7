"""Constants and helpers shared by the benchmark sections.

Error capture (one failed configuration is recorded, not fatal), the two
benchmark modes, timing of repeated calls, and the cache of compiled models
that the train, infer and jit sections share.
"""

import gc
import sys
import time
import traceback

import numpy as np

from training.bench.data import synthetic_batch

SECTIONS = ("train", "infer", "jit", "memory", "solvers")
MODES = ("default", "reference")
# The training solvers the train section compares (see ``training/benchmark.py``).
TRAIN_SOLVERS = ("euler", "anderson")
SMOKE_OVERRIDES = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=32)
# Option -> (full-size default, smoke default); None: per model / all examples.
SIZE_DEFAULTS = {
    "batch_size": (64, 4),
    "num_points": (None, 24),
    "flow_steps": (200, 3),
    "memory_steps": ("50,500", "3,30"),
    "solver_max_steps": (1000, 50),
    "max_examples": (None, 8),
    "solver_batch_size": (64, 4),
    "jit_timeout": (1800.0, 30.0),
    "worker_timeout": (1800.0, 300.0),
    "memory_jobs": (1, 2),
    "anderson_max_steps": (50, 3),
}
MIB = 2.0**20


def error_entry(exc):
    text = f"{type(exc).__name__}: {exc}".strip()
    return {"error": text[:4000], "traceback": traceback.format_exc()[-4000:]}


def guarded(label, fn, *args, **kwargs):
    """``fn(...)``, or ``{"error": ...}`` (printed) if it raises."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # one failed configuration must not lose the others
        entry = error_entry(exc)
        print(f"  {label}: FAILED: {entry['error'][:300]}", file=sys.stderr, flush=True)
        return entry


def ok(entry):
    return isinstance(entry, dict) and "error" not in entry


def log_entry(section, name, mode, entry, key, unit):
    if ok(entry):
        print(f"  {section} {name} {mode}: {entry[key]:.4g} {unit} "
              f"(first call {entry['first_call_s']:.1f} s)", flush=True)


def guarded_logged(label, fn, section, name, setting, key, unit):
    """``guarded(label, fn)`` of one configuration, then its `log_entry`."""
    entry = guarded(label, fn)
    log_entry(section, name, setting, entry, key, unit)
    return entry


def set_ratio(target, field, entries, numerator, denominator, key):
    """``target[field] = entries[numerator][key] / entries[denominator][key]`` when
    both configurations ran (absent otherwise)."""
    top, bottom = entries.get(numerator), entries.get(denominator)
    if ok(top) and ok(bottom):
        target[field] = top[key] / bottom[key]


def mode_kwargs(mode, steps):
    """`create_model` overrides of a benchmark mode (see ``training/benchmark.py``)."""
    if mode == "default":
        return dict(max_steps=steps, tol=0.0)
    if mode == "reference":
        return dict(precompute_context=False, eta=5.0, check_every=100, max_steps=steps,
                    tol=0.0, solver="euler")
    raise ValueError(f"Unknown mode {mode!r}; known: {MODES}.")


def train_solver_kwargs(solver, args):
    """`create_model` overrides of a training solver of the train section.

    ``euler``: the authors' flow (eta 5, ``--flow-steps`` steps, their stopping rule
    ``rel`` < 1e-4 checked every 100 steps); ``anderson``: to the same tolerance,
    checked every step, at most ``--anderson-max-steps``.
    """
    if solver == "euler":
        return dict(solver="euler", eta=5.0, max_steps=args.flow_steps, tol=1e-4,
                    check_every=100)
    if solver == "anderson":
        return dict(solver="anderson", max_steps=args.anderson_max_steps, tol=1e-4)
    raise ValueError(f"Unknown training solver {solver!r}; known: {TRAIN_SOLVERS}.")


def padded_length(name, num_points):
    from ddeq_keras.models.configs import MODEL_CONFIGS

    if num_points:
        return int(num_points)
    try:
        return int(MODEL_CONFIGS[name][2])
    except KeyError:
        raise ValueError(f"Unknown model {name!r}.") from None


def solver_options(backbone):
    """The solver and adjoint of a DDEQ backbone as flat `create_model` options:
    ``{"solver": "euler", "eta": ..., "max_steps": ..., "backward": "phantom",
    "phantom_steps": ...}``."""
    solver, adjoint = backbone.solver, backbone.backward
    options = {"solver": solver.name, **solver.get_config(), "backward": adjoint.name}
    options.update({f"{adjoint.name}_{k}": v for k, v in adjoint.get_config().items()})
    return options


def model_summary(model):
    """What was actually built: solver options and where the x-work runs."""
    config = {}
    # DDEQ tasks keep the network and the flow in a backbone; baselines have none.
    backbone = getattr(model, "backbone", None)
    if hasattr(model, "solver_config"):
        config.update(model.solver_config())
    elif hasattr(backbone, "solver"):
        config.update(solver_options(backbone))
    for key in ("precompute_context", "latent_dim", "num_cross_blocks"):
        owner = next((o for o in (model, backbone) if hasattr(o, key)), None)
        if owner is not None:
            config[key] = getattr(owner, key)
    config["jit_compile"] = getattr(model, "jit_compile", None)
    config["trainable_params"] = int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    return config


def time_calls(fn, repeats):
    """``fn()`` once untimed (compilation, building), then ``repeats`` timed calls.

    ``repeats=0`` (for calls of many minutes): only the first call, whose time,
    compilation included, is reported as the median (an upper bound).
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(max(int(repeats), 0)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    median = float(np.median(times)) if times else first
    return {"first_call_s": first, "median_s": median, "times_s": times}


def measure_train(model, x, y, repeats):
    logs = {}

    def step():
        logs.update(model.train_on_batch(x, y, return_dict=True))

    timing = time_calls(step, repeats)
    result = {"step_s": timing["median_s"], "first_call_s": timing["first_call_s"],
              "times_s": timing["times_s"], "steps_timed": len(timing["times_s"])}
    # The solver's work in the last timed step (train_on_batch resets the metrics).
    for key, name in (("flow_steps", "evals_per_sample"), ("flow_converged", "converged_share"),
                      ("flow_rel_mmd", "rel_mmd_final_mean")):
        if key in logs:
            result[name] = float(logs[key])
    return result


def model_batch(model, batch_size, num_points, seed=0):
    """A synthetic batch with ``model``'s point dimension and number of classes."""
    return synthetic_batch(batch_size, num_points, model.point_dim, seed=seed,
                           num_classes=getattr(model, "num_classes", 10))


def training_targets(model, x, y):
    """The targets of a training step: class labels, or for a completion model
    (no ``num_classes``) the complete clouds, here the inputs themselves."""
    return y if hasattr(model, "num_classes") else x


def batch_for(args, name, model):
    """A synthetic batch for ``name`` and its training targets."""
    x, y = model_batch(model, args.batch_size, padded_length(name, args.num_points))
    return x, training_targets(model, x, y)


class ModelCache:
    """Compiled models by (name, mode, jit_compile), shared by train, infer and jit."""

    def __init__(self, args):
        self.args = args
        self.models = {}

    def get(self, name, mode, jit_compile="auto"):
        """``mode``: one of `MODES`, or ``"solver:<name>"`` of `TRAIN_SOLVERS`."""
        key = (name, mode, jit_compile)
        if key not in self.models:
            from ddeq_keras.models import create_model

            if mode.startswith("solver:"):
                kwargs = train_solver_kwargs(mode[len("solver:"):], self.args)
            else:
                kwargs = mode_kwargs(mode, self.args.flow_steps)
            model = create_model(name, **kwargs, **self.args.overrides)
            model.compile(jit_compile=jit_compile)
            self.models[key] = model
        return self.models[key]

    def find(self, name, mode, resolved_jit):
        """A cached model of this name and mode whose compile resolved to ``resolved_jit``."""
        for (n, m, _), model in self.models.items():
            resolved = bool(getattr(model, "jit_compile", None))
            if n == name and m == mode and resolved == resolved_jit:
                return model
        return None

    def drop(self, name, prefix=""):
        """Frees the models of ``name`` whose mode starts with ``prefix``."""
        for key in [k for k in self.models if k[0] == name and k[1].startswith(prefix)]:
            del self.models[key]
        gc.collect()

    def clear(self):
        self.models.clear()
        gc.collect()
        release_device_cache()


def release_device_cache():
    try:
        import keras

        if keras.config.backend() == "torch":
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    except Exception:
        pass
