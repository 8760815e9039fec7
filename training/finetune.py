"""Fine-tune a pretrained classifier on your own folder of point sets.

`python -m training.finetune --preset PRESET --manual-dir FOLDER`: the preset (a
zoo name, a folder or ``hf://owner/name``) is trained further on the clouds of
FOLDER, laid out as ``<class>/[train|test/]<file>`` (see the `point_set_folder`
builder; it is prepared into ``--data-dir``, default ``<run-dir>/data``). When the
folder's classes are not the preset's, the classifier gets a new head for them
(`DDEQClassifier.with_new_head`: the backbone's weights are kept). Training runs
in two optional phases: ``--frozen-epochs`` with the backbone frozen (the new head
learns on fixed features), then ``--epochs`` with everything trained at
``--unfrozen-learning-rate``. Checkpoints, ``--resume``, ``metrics.csv`` (with a
``phase`` column), the evaluation and the preset folder are those of
`training.train` (`training.loop`); the preset loads with
``ddeq_keras.from_pretrained(<run-dir>/preset)``.

Without ``test`` folders, ``--holdout`` (a fraction of the training clouds) is
held out for monitoring and the final evaluation.

Examples (from the repository root)::

    python -m training.finetune --preset ddeq_modelnet40 --manual-dir ~/my_scans \\
        --frozen-epochs 3 --epochs 5 --run-dir runs/my_scans
    # interrupted? the same command with --resume continues where it stopped
    python -m training.finetune --preset zoo/ddeq_mnist --manual-dir ~/sketches \\
        --frozen-epochs 0 --epochs 4 --set batch_size=16 --option nan_policy=drop
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import keras

from training import loop, session
from training.recipes import Recipe, apply_settings


def _option(text):
    from training.prepare_data import _parse_option

    return _parse_option(text)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="zoo name, folder or hf://owner/name")
    parser.add_argument("--frozen-epochs", type=int, default=2,
                        help="epochs with the backbone frozen, first (0: none)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs with everything trained, after them (0: none)")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="Adam's rate while the backbone is frozen")
    parser.add_argument("--unfrozen-learning-rate", type=float,
                        help="Adam's rate once it is not (default: --learning-rate / 10)")
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="fraction of the training clouds held out for evaluation "
                             "when the folder has no test/ folders")
    parser.add_argument("--option", action="append", default=[], type=_option,
                        metavar="KEY=VALUE",
                        help="point_set_folder option (nan_policy=drop, "
                             "drop_extra_columns=true, ...); repeatable")
    session.add_run_arguments(
        parser, set_help="change a recipe field (batch_size=16, checkpoint_every=50, "
                         "augment=standard, seed=1, num_points=512); repeatable",
        run_dir_help="run folder (default runs/finetune_<folder name>)",
        data_dir_help="where the folder is prepared (default <run-dir>/data; the data "
                      "is identified by its options, not by the folder, so do not share "
                      "one data dir between folders)")
    return parser


def load_model(preset, class_names, model=None):
    """The preset's classifier (``model``: already loaded), with a new head unless its
    classes are ``class_names``."""
    import ddeq_keras

    if model is None:
        model = ddeq_keras.from_pretrained(preset)
    if not hasattr(model, "with_new_head"):
        raise SystemExit(f"error: {preset} holds a {type(model).__name__}; fine-tuning to "
                         "new classes needs a DDEQClassifier preset.")
    if list(getattr(model, "class_names", None) or []) != list(class_names):
        model = model.with_new_head(len(class_names), class_names=class_names)
    return model


def enter_phase(model, phase, recipe, unfrozen_rate, steps_per_epoch):
    """``frozen``: the head alone trains; ``unfrozen``: everything, at the lower rate."""
    model.backbone.trainable = phase == "unfrozen"
    rate = recipe.learning_rate if phase == "frozen" else unfrozen_rate
    # Each phase has its own optimizer (moments of the variables it trains).
    model.compile(optimizer=recipe.replace(learning_rate=rate).optimizer(steps_per_epoch))
    model.optimizer.build(model.trainable_variables)


def make_model(progress):
    """A fine-tuning run's model, ready to load its checkpoint (see `training.evaluate`)."""
    recipe, finetune = Recipe(**progress["recipe"]), progress["finetune"]
    model = load_model(finetune["preset"], finetune["class_names"])
    phase = progress.get("phase") or "unfrozen"
    enter_phase(model, phase, recipe, finetune["unfrozen_learning_rate"],
                progress["steps_per_epoch"])
    return model, recipe


def prepare_data(args, options):
    """The `point_set_folder` builder of ``--manual-dir``, prepared with ``options``."""
    import ddeq_keras.datasets as dd

    return dd.prepare("point_set_folder", data_dir=args.data_dir,
                      manual_dir=args.manual_dir, options=options)


def splits(builder, holdout):
    """(train, evaluation) splits: the folder's test/ clouds, or a held-out part."""
    if "test" in builder.info.splits:
        return "train", "test"
    total = builder.info.splits["train"].num_examples
    held = max(1, round(holdout * total))
    if not 0 < holdout < 1 or held >= total:
        raise SystemExit(f"error: {builder.data_dir} has no test split and --holdout "
                         f"{holdout} of {total} training clouds leaves none to train on.")
    return f"train[:{total - held}]", f"train[{total - held}:]"


def run(args):
    """Fine-tunes (or resumes), then evaluates and writes the preset; returns the report."""
    if not args.manual_dir:
        raise SystemExit("error: --manual-dir (the folder of class folders) is required.")
    if args.frozen_epochs < 0 or args.epochs < 0 or args.frozen_epochs + args.epochs < 1:
        raise SystemExit("error: --frozen-epochs and --epochs must be >= 0, not both 0.")
    if any(s.split("=")[0].strip() in ("epochs", "model") or s.startswith("model.")
           for s in args.set):
        raise SystemExit("error: set epochs with --frozen-epochs / --epochs; a preset's "
                         "model arguments are fixed.")
    folder = Path(args.manual_dir)
    run_dir = Path(args.run_dir or Path("runs") / f"finetune_{folder.resolve().name}")
    args.data_dir = args.data_dir or str(run_dir / "data")
    session.set_up_distribution(args.data_parallel)  # before any Keras variable exists
    recipe = apply_settings(Recipe(
        model=str(args.preset), dataset="point_set_folder", num_points=0, batch_size=32,
        epochs=args.frozen_epochs + args.epochs, learning_rate=args.learning_rate,
        notes=f"Fine-tuned from the preset `{args.preset}` on the point-set folder "
              f"`{folder.name}`: {args.frozen_epochs} epochs with the backbone frozen, then "
              f"{args.epochs} with everything trained."), args.set)
    unfrozen_rate = args.unfrozen_learning_rate or recipe.learning_rate / 10
    run_dir = session.check_run_dir(run_dir, args.resume)

    import ddeq_keras

    pretrained = ddeq_keras.from_pretrained(args.preset)
    options = {"num_dims": pretrained.point_dim, **dict(args.option)}
    builder = prepare_data(args, options)
    class_names = list(builder.info.features["label"].names)
    train_split, eval_split = splits(builder, args.holdout)

    def build(model=None):
        # The entry point sets the seeds, here: the new head is the same in every
        # launch, whether or not the data had to be prepared first.
        keras.utils.set_random_seed(recipe.seed)
        return load_model(args.preset, class_names, model)

    model = build(pretrained)
    pre = getattr(model, "preprocessor", None)
    recipe = recipe.replace(
        train_split=train_split, eval_split=eval_split, monitor_split=eval_split,
        num_points=recipe.num_points or (pre and pre.num_points) or 1024)
    steps = loop.count_steps(recipe, builder, args)
    frozen = args.frozen_epochs
    phases = loop.Phases(
        of_epoch=lambda epoch: "frozen" if epoch < frozen else "unfrozen",
        enter=lambda m, phase: enter_phase(m, phase, recipe, unfrozen_rate, steps),
        logged=True)
    config = {"recipe": recipe.to_dict(), "finetune": {
        "preset": str(args.preset), "manual_dir": str(folder.resolve()),
        "class_names": class_names, "options": options, "frozen_epochs": frozen,
        "unfrozen_learning_rate": unfrozen_rate}}
    progress = loop.TrainingLoop(model, recipe, args, run_dir=run_dir, source=builder,
                                 steps_per_epoch=steps, config=config, phases=phases).run()
    model = session.single_device_copy(model, build)
    command = "python -m training.finetune " + " ".join(
        shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    return session.finish(
        args, model, recipe, run_dir, progress, source=builder,
        dataset=f"point_set_folder:{folder.resolve().name}", command=command,
        training={"preset": str(args.preset), "frozen_epochs": frozen,
                  "epochs": args.epochs, "class_names": class_names},
        trained_with="Fine-tuned with `training/finetune.py`")


def main(argv=None):
    return session.run_main(build_parser(), run, argv)


if __name__ == "__main__":
    main()
