"""How spread out a DDEQ's equilibrium particles are under each solver (the collapse check).

A permutation-equivariant map that is a contraction has one fixed point, and it must
be symmetric: every particle at the same place. Anderson's particle-wise iteration
``z <- f(z)`` reaches it in a few evaluations; the authors' Euler flow (eta 5, 200
steps) stops far from any equilibrium, still spread, and heads for the same point when
run longer with smaller steps (the README's table). This prints, per solver:
- for a classifier, the standard deviation across its equilibrium particles, averaged
  over the latent features (0: they all coincide), and how far the solve got: the final
  ``MMD^2(z, f(z))`` relative to the initial one (an equilibrium has about 0), and the
  mean distance of its particles to the centre of the first solver's particles (do two
  solvers go to the same point?);
- for a completer, the per-axis standard deviation of each cloud's generated points
  (about 1 where they spread over the missing part, 0 where they coincide).
Clouds: the real MNIST test clouds bundled with the package for 2-D models (cut like
the completion recipe's data for completers: per-axis standardised, every point within
0.6 of two random points removed), random ellipsoid surfaces of 1,024 points for 3-D
ones.

Examples (from the repository root)::

    KERAS_BACKEND=jax python -m training.particle_spread --untrained ddeq_mnist_completion
    KERAS_BACKEND=jax python -m training.particle_spread --untrained ddeq_mnist_completion \\
        --model-option residual='"initial"'
    KERAS_BACKEND=jax python -m training.particle_spread --preset ddeq_mnist \\
        --solver anderson:max_steps=50,tol=1e-4 --solver euler:max_steps=200,tol=0 \\
        --solver euler:eta=0.05,max_steps=64000,tol=0 --output spread.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

DEFAULT_SOLVERS = ("anderson:max_steps=1,tol=0", "anderson:max_steps=50,tol=1e-4",
                   "euler:max_steps=200,tol=0", "euler:eta=1,max_steps=200,tol=0")


def cut_clouds(clouds, radius=0.6, num_centers=2, seed=0):
    """Standardised partial clouds: points within ``radius`` of random centres removed."""
    rng = np.random.default_rng(seed)
    partial = []
    for cloud in clouds:
        cloud = (cloud - cloud.mean(0)) / cloud.std(0)
        centres = cloud[rng.choice(len(cloud), num_centers, replace=False)]
        nearest = np.min(np.linalg.norm(cloud[:, None] - centres[None], axis=-1), axis=1)
        partial.append(cloud[nearest > radius].astype("float32"))
    return partial


def parse_solver(text):
    """``"euler:eta=1,max_steps=200"`` -> ``("euler", {"eta": 1, "max_steps": 200})``."""
    name, _, options = text.partition(":")
    kwargs = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: solver option {item!r} is not KEY=VALUE")
        kwargs[key] = json.loads(value)
    return name, kwargs


def generated_std(model, clouds):
    """Per cloud, the mean per-axis standard deviation of the generated points."""
    out = model.predict(clouds, verbose=0)
    return [float(out["points"][i][out["generated"][i]].std(0).mean())
            for i in range(len(clouds))]


def particle_std(model, clouds):
    """Per cloud, the std across the equilibrium particles (averaged over features),
    the solve's final ``MMD^2(z, f(z))`` relative to its initial one, and the
    particles ``(clouds, k, latent_dim)``."""
    from keras import ops

    out = model.backbone(model.preprocess(clouds), training=False)
    particles = ops.convert_to_numpy(out["particles"])
    stats = {k: ops.convert_to_numpy(out["stats"][k]) for k in ("mmd_final", "mmd_initial")}
    rel = stats["mmd_final"] / np.maximum(stats["mmd_initial"], 1e-30)
    return [float(z.std(0).mean()) for z in particles], [float(r) for r in rel], particles


def distance_to_centre(particles, reference):
    """Per cloud, the mean distance of ``particles`` to the centre of ``reference``'s."""
    centre = np.mean(reference, axis=1, keepdims=True)
    return [float(d) for d in np.linalg.norm(particles - centre, axis=-1).mean(axis=1)]


def ellipsoids(count, num_points=1024, seed=0):
    """Points on the surfaces of random axis-aligned ellipsoids, ``(num_points, 3)`` each."""
    rng = np.random.default_rng(seed)
    clouds = []
    for _ in range(count):
        v = rng.normal(size=(num_points, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        clouds.append((v * rng.uniform(0.3, 1.0, size=3)).astype("float32"))
    return clouds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a DDEQ preset (zoo name or folder)")
    source.add_argument("--untrained", metavar="CONFIG",
                        help="a named DDEQ configuration, freshly initialised")
    parser.add_argument("--solver", action="append", default=None,
                        help="NAME[:KEY=VALUE,...] (repeatable); default: "
                             + " ".join(DEFAULT_SOLVERS))
    parser.add_argument("--clouds", type=int, default=4, help="bundled test clouds")
    parser.add_argument("--seed", type=int, default=1, help="weights of --untrained")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a configuration override of --untrained (JSON value), e.g. "
                             "residual='\"initial\"' (repeatable)")
    parser.add_argument("--output", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import keras

    import ddeq_keras
    from ddeq_keras.examples.main_job import bundled_mnist_clouds
    from ddeq_keras.models import create_model
    from ddeq_keras.solvers import get_solver

    if args.model_option and not args.untrained:
        parser.error("--model-option changes the configuration of --untrained only")
    _, options = parse_solver("model:" + ",".join(args.model_option))
    results, clouds, reference = [], None, None
    for spec in args.solver or DEFAULT_SOLVERS:
        name, kwargs = parse_solver(spec)
        keras.utils.set_random_seed(args.seed)  # entry point: the same weights per solver
        if args.untrained:
            model = create_model(args.untrained, solver=name, **kwargs, **options)
        else:  # the preset's weights with another solver (before its first call)
            model = ddeq_keras.from_pretrained(args.preset)
            model.backbone.equilibrium.solver = get_solver(name, **kwargs)
        completer = not hasattr(model, "num_classes")
        if clouds is None:
            clouds = (bundled_mnist_clouds()[0][:args.clouds] if model.point_dim == 2
                      else ellipsoids(args.clouds))
            clouds = cut_clouds(clouds) if completer else clouds
        rel = distance = None
        if completer:
            spread, what = generated_std(model, clouds), "generated points' per-axis std"
        else:
            spread, rel, particles = particle_std(model, clouds)
            reference = particles if reference is None else reference
            distance, what = distance_to_centre(particles, reference), "particles' std"
        results.append({"solver": spec, "generated_std": spread, "rel_mmd": rel,
                        "distance_to_first": distance})
        line = f"{spec:40s} {what}: " + " ".join(f"{s:.3g}" for s in spread)
        if rel is not None:
            line += " | rel MMD^2: " + " ".join(f"{r:.2g}" for r in rel)
            line += " | to 1st's centre: " + " ".join(f"{d:.3g}" for d in distance)
        print(line, flush=True)
    if args.output:
        source_name = args.preset or f"untrained {args.untrained}"
        with open(args.output, "w") as f:
            json.dump({"model": source_name, "model_options": options, "backend": keras.config.backend(),
                       "clouds": args.clouds, "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
