"""What a training entry point does around `training.loop.TrainingLoop`.

The command line of a run (`add_run_arguments`, `run_main`), the data-parallel
set-up (`set_up_distribution`), the run folder (`check_run_dir`), and the end of
a run: a one-device copy after data-parallel training (`single_device_copy`), the
final evaluation, plots and the preset folder (`finish`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

from training.loop import CHECKPOINT, normalization, pipeline, sync


def add_run_arguments(parser, *, set_help, run_dir_help, data_dir_help):
    """The options every training entry point takes (data, run folder, resume...)."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=set_help)
    parser.add_argument("--data-dir", help=data_dir_help)
    parser.add_argument("--manual-dir", help="source files, to prepare the data if needed")
    parser.add_argument("--run-dir", help=run_dir_help)
    parser.add_argument("--preset-dir", help="where to write the final preset "
                                             "(default <run-dir>/preset)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <run-dir>/checkpoint.safetensors")
    parser.add_argument("--steps-per-epoch", type=int,
                        help="stop each epoch after this many steps (quick runs)")
    parser.add_argument("--eval-limit", type=int,
                        help="evaluate on at most this many clouds (quick runs)")
    parser.add_argument("--time-budget", type=float,
                        help="minutes of training wall time; stops at the first step "
                             "past it (baselines at the same budget)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="replicate the model on every device and split each batch "
                             "between them (keras.distribution.DataParallel; JAX only; "
                             "on CPU simulate devices with XLA_FLAGS="
                             "--xla_force_host_platform_device_count=N)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                        help="Keras progress bar (1), one line per epoch (2) or none (0)")


def run_main(parser, run, argv=None):
    """Parses ``argv`` and returns ``run(args)``; bad settings, data or checkpoints
    (``ValueError``) end the program with their message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # for the command line in the records and the model card
    try:
        return run(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def set_up_distribution(data_parallel):
    """Sets `keras.distribution.DataParallel` over all devices; returns the device count.

    Must run before any Keras variable exists (an entry point's first step):
    variables created earlier live on one device and cannot join the replicas.
    """
    if not data_parallel:
        return 1
    backend = keras.config.backend()
    if backend != "jax":
        raise SystemExit(
            f"error: --data-parallel uses keras.distribution, which Keras "
            f"{keras.__version__} implements for the JAX backend only (its TensorFlow "
            f"version is an unfinished prototype, PyTorch has none); this run uses the "
            f"{backend} backend. Run with KERAS_BACKEND=jax, or without --data-parallel.")
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    print(f"Data parallel over {len(devices)} devices: {', '.join(devices)}")
    return len(devices)


def check_run_dir(run_dir, resume):
    """Creates the run folder; refuses to overwrite a run unless resuming."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / CHECKPOINT).exists() and not resume:
        raise SystemExit(f"{run_dir / CHECKPOINT} exists: pass --resume to continue that "
                         "run, or another --run-dir to start a new one (nothing was "
                         "overwritten).")
    # Half-written checkpoints of a killed run (the complete one was kept).
    for stale in run_dir.glob(f".{CHECKPOINT}.tmp-*"):
        stale.unlink(missing_ok=True)
    return run_dir


def single_device_copy(model, build):
    """``model`` itself, or after data-parallel training a one-device copy of it.

    Evaluation takes every cloud, so its last batch rarely splits evenly between
    devices; the copy (``build()``: the same architecture, its variables assigned
    from ``model``'s) evaluates and saves on one device.
    """
    if keras.distribution.distribution() is None:
        return model
    sync(model)
    values = [keras.ops.convert_to_numpy(v) for v in model.variables]
    keras.distribution.set_distribution(None)
    copy = build()
    if [tuple(v.shape) for v in copy.variables] != [tuple(v.shape) for v in values]:
        raise RuntimeError("the one-device copy of the model has other variables")
    for variable, value in zip(copy.variables, values):
        variable.assign(value)
    copy.compile()  # the task's own loss and metrics, as in training
    return copy


def trainable_parameter_count(model):
    """The number of trainable parameters of ``model``."""
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def finish(args, model, recipe, run_dir, progress, *, source, dataset, command, training,
           trained_with):
    """Final evaluation, plots and the preset folder of a finished run.

    Args:
        dataset: the dataset's name in ``metrics.json``.
        command: the command line, for the records and the model card.
        training: what ``evaluation.json["training"]`` adds about the run.
        trained_with: how the model card's training sentence starts
            ("Trained with `training/recipes.py::ddeq_mnist`").
    """
    from training import evaluate as ev

    run_dir = Path(run_dir)
    data = pipeline(recipe, recipe.eval_split, source, args, training=False,
                    normalize=normalization(model), limit=args.eval_limit)
    split = recipe.eval_split
    if args.eval_limit is not None and "[" not in split:
        split = f"{split}[:{args.eval_limit}]"
    report = ev.evaluate_model(model, data, dataset=dataset, split=split, task=recipe.task,
                               command=command)
    report["training"] = {**training, "epochs_completed": progress["epoch"],
                          "stopped_at_step": progress["step"],
                          "stopped_by_time_budget": progress["finished"],
                          "train_seconds": round(progress["train_seconds"], 1),
                          "trainable_parameters": trainable_parameter_count(model)}
    (run_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_plots:
        from training import plots

        plots.write_run_plots(run_dir, model, data, report)
    preset_dir = Path(args.preset_dir or run_dir / "preset")
    hours = progress["train_seconds"] / 3600
    trained = (f"{trained_with} for {hours:.2f} h ({progress['epoch']} epochs"
               f"{', stopped by the time budget' if progress['finished'] else ''}) on "
               f"{report['hardware']}, {keras.config.backend()} backend.")
    card_info = {"training": "\n\n".join(t for t in (recipe.notes, trained) if t),
                 "command": command}
    model.save_to_preset(preset_dir, metrics=report["records"], card_info=card_info)
    print(json.dumps({k: report[k] for k in ("summary", "training")}, indent=2))
    print(f"Preset written to {preset_dir}")
    return report
