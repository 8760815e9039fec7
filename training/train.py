"""Train a zoo model from its recipe: `python -m training.train --recipe NAME`.

The backend comes from ``KERAS_BACKEND``. The run folder (``--run-dir``, default
``runs/<recipe>``) receives:

- ``checkpoint.safetensors``: the resume state (weights, optimizer, random state,
  progress), written atomically at the end of every epoch and every
  ``checkpoint_every`` steps; ``--resume`` continues from it exactly;
- ``metrics.csv``: one row per epoch (training metrics, monitoring metrics,
  learning rate, wall time);
- ``recipe.json``; at the end ``evaluation.json`` (the full evaluation, see
  `training.evaluate`), the PNG plots, and the preset folder (``--preset-dir``,
  default ``<run-dir>/preset``) in the zoo format, with ``metrics.json`` filled
  by the evaluation.

Examples (from the repository root)::

    KERAS_BACKEND=tensorflow python -m training.train --recipe ddeq_mnist \\
        --data-dir ~/tensorflow_datasets --manual-dir ../shared/data/mnist
    # interrupted? the same command with --resume continues where it stopped
    python -m training.train --recipe pointnet_mnist --time-budget 60 --set epochs=3
    # two (simulated) devices, each batch split between them (JAX only)
    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \\
        python -m training.train --recipe ddeq_mnist --data-parallel ...

The epoch loop and checkpoints (`training.loop`) and the set-up and final steps
(`training.session`) are shared with `training.finetune`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import keras

from training import loop, session
from training.recipes import get_recipe, list_recipes


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, choices=list_recipes())
    session.add_run_arguments(
        parser, set_help="change a recipe field (epochs=2) or model argument "
                         "(model.max_steps=20); repeatable",
        run_dir_help="run folder (default runs/<recipe>)",
        data_dir_help="TFDS data_dir of the prepared data")
    return parser


def build_model(recipe):
    """The recipe's model, built with fresh weights, not compiled."""
    from ddeq_keras.models import create_model

    return create_model(recipe.model, **recipe.model_overrides)


def compile_model(model, recipe, steps_per_epoch):
    model.compile(optimizer=recipe.optimizer(steps_per_epoch))
    model.optimizer.build(model.trainable_variables)  # its variables exist to be restored


def make_model(recipe, steps_per_epoch):
    """The recipe's model, compiled with its optimizer (built: checkpoints load into it)."""
    model = build_model(recipe)
    compile_model(model, recipe, steps_per_epoch)
    return model


def run(args):
    """Trains (or resumes) a recipe, then evaluates and writes the preset; returns the report."""
    recipe = get_recipe(args.recipe, args.set)
    session.set_up_distribution(args.data_parallel)  # before any Keras variable exists
    run_dir = session.check_run_dir(args.run_dir or Path("runs") / args.recipe, args.resume)
    steps = loop.count_steps(recipe, recipe.dataset, args)
    # The entry point sets the seeds, after the data: preparing it draws random
    # numbers, and the initial weights must not depend on whether it was needed.
    keras.utils.set_random_seed(recipe.seed)
    model = build_model(recipe)
    phases = loop.Phases(of_epoch=lambda epoch: "train",
                         enter=lambda model, phase: compile_model(model, recipe, steps))
    progress = loop.TrainingLoop(
        model, recipe, args, run_dir=run_dir, source=recipe.dataset, steps_per_epoch=steps,
        config={"recipe": recipe.to_dict()}, phases=phases).run()
    model = session.single_device_copy(model, lambda: build_model(recipe))
    command = "python -m training.train " + " ".join(
        shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    return session.finish(
        args, model, recipe, run_dir, progress, source=recipe.dataset,
        dataset=recipe.dataset, command=command, training={"recipe": args.recipe},
        trained_with=f"Trained with `training/recipes.py::{args.recipe}`")


def main(argv=None):
    return session.run_main(build_parser(), run, argv)


if __name__ == "__main__":
    main()
