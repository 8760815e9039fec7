"""How spread out a DDEQ's equilibrium particles are under each solver (the collapse check).

A permutation-equivariant map that is a contraction has one fixed point, and it must
be symmetric: every particle at the same place. Anderson's particle-wise iteration
``z <- f(z)`` finds such a point; the authors' flow, which only asks the *measure* of
the particles to be a fixed point, may stay spread. This prints, per solver:
- for a classifier, the standard deviation across its equilibrium particles, averaged
  over the latent features (0: they all coincide);
- for a completer, the per-axis standard deviation of each cloud's generated points
  (about 1 where they spread over the missing part, 0 where they coincide).
Clouds: the real MNIST test clouds bundled with the package for 2-D models (cut like
the completion recipe's data for completers: per-axis standardised, every point within
0.6 of two random points removed), random ellipsoid surfaces of 1,024 points for 3-D
ones.

Examples (from the repository root)::

    KERAS_BACKEND=jax python -m training.particle_spread --untrained ddeq_mnist_completion
    KERAS_BACKEND=jax python -m training.particle_spread --preset ddeq_mnist \\
        --solver anderson:max_steps=50,tol=1e-4 --solver euler:max_steps=200,tol=0
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
    """Per cloud, the std across the equilibrium particles, averaged over features."""
    from keras import ops

    out = model.backbone(model.preprocess(clouds), training=False)
    particles = ops.convert_to_numpy(out["particles"])
    return [float(z.std(0).mean()) for z in particles]


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
    args = parser.parse_args(argv)

    import keras

    import ddeq_keras
    from ddeq_keras.examples.main_job import bundled_mnist_clouds
    from ddeq_keras.models import create_model
    from ddeq_keras.solvers import get_solver

    results, clouds = [], None
    for spec in args.solver or DEFAULT_SOLVERS:
        name, kwargs = parse_solver(spec)
        keras.utils.set_random_seed(args.seed)  # entry point: the same weights per solver
        if args.untrained:
            model = create_model(args.untrained, solver=name, **kwargs)
        else:  # the preset's weights with another solver (before its first call)
            model = ddeq_keras.from_pretrained(args.preset)
            model.backbone.equilibrium.solver = get_solver(name, **kwargs)
        completer = not hasattr(model, "num_classes")
        if clouds is None:
            clouds = (bundled_mnist_clouds()[0][:args.clouds] if model.point_dim == 2
                      else ellipsoids(args.clouds))
            clouds = cut_clouds(clouds) if completer else clouds
        spread = (generated_std if completer else particle_std)(model, clouds)
        results.append({"solver": spec, "generated_std": spread})
        what = "generated points' per-axis std" if completer else "particles' std"
        print(f"{spec:40s} {what}: "
              + " ".join(f"{s:.3g}" for s in spread), flush=True)
    return results


if __name__ == "__main__":
    main()
