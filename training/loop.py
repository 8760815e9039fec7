"""The epoch loop shared by `training.train` and `training.finetune`.

`TrainingLoop` runs the epochs of ``model.fit`` with a checkpoint every
``checkpoint_every`` steps and at every epoch end, ``--resume`` from the last
complete checkpoint, one ``metrics.csv`` row per epoch, and phases (fine-tuning:
backbone frozen, then unfrozen); `pipeline` and `count_steps` make its data.
What an entry point does around it (options, devices, run folder, the final
evaluation and preset) is in `training.session`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

CHECKPOINT = "checkpoint.safetensors"


def num_devices():
    distribution = keras.distribution.distribution()
    return 1 if distribution is None else int(distribution.device_mesh.devices.size)


def normalization(model):
    """The normalisation the model's preprocessor expects (the pipeline applies it)."""
    pre = getattr(model, "preprocessor", None)
    return "std" if pre is None or pre.normalize is None else pre.normalize


def pipeline(recipe, split, source, args, *, training, normalize="std", seed=None,
             limit=None, drop_remainder=None):
    """Batches of ``split`` of ``source`` (a builder or its name) for this recipe."""
    import ddeq_keras.datasets as dd

    if limit is not None and "[" not in split:
        split = f"{split}[:{limit}]"
    return dd.make_pipeline(
        source, split, num_points=recipe.num_points, batch_size=recipe.batch_size,
        task=recipe.task, normalize=normalize,
        augment=recipe.augment == "standard" and training, shuffle=training,
        # A fixed seed also for evaluation: clouds larger than num_points are
        # subsampled at random, and a resumed run must see the same ones.
        seed=recipe.seed if seed is None else seed,
        drop_remainder=training if drop_remainder is None else drop_remainder,
        data_dir=args.data_dir, manual_dir=args.manual_dir)


def count_steps(recipe, source, args):
    """Steps per epoch: full batches of the training split, at most --steps-per-epoch."""
    probe = pipeline(recipe, recipe.train_split, source, args, training=True)
    steps = int(probe.cardinality())
    if steps < 1:
        raise SystemExit(f"{recipe.train_split} of {recipe.dataset} has fewer than one "
                         f"batch of {recipe.batch_size}.")
    if recipe.batch_size % num_devices():
        raise SystemExit(f"batch_size {recipe.batch_size} does not split evenly between "
                         f"{num_devices()} devices.")
    return min(steps, args.steps_per_epoch) if args.steps_per_epoch else steps


class StepCheckpoint(keras.callbacks.Callback):
    """Checkpoints every ``every`` steps and stops training past the deadline."""

    def __init__(self, save, every, first_step, deadline):
        super().__init__()
        self.save, self.every = save, every
        self.first_step, self.deadline = first_step, deadline
        self.steps_done = first_step
        self.out_of_time = False

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = self.first_step + batch + 1
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.out_of_time = True
            self.model.stop_training = True
        if self.every and self.steps_done % self.every == 0 or self.out_of_time:
            self.save(self.steps_done)


def sync(model):
    # JAX keeps the training state outside the variables while `fit` runs.
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


def _read_csv(path):
    if not path.exists():
        return [], []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader), list(reader.fieldnames or [])


def _write_csv(path, rows, fields):
    # Whole file to a temporary one, then renamed: a kill never leaves half a table.
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def append_csv(path, row):
    """Adds a row; columns that a row lacks stay empty, new ones are added."""
    rows, fields = _read_csv(path)
    fields += [key for key in row if key not in fields]
    _write_csv(path, rows + [row], fields)


def trim_csv(path, epochs_done):
    """Drops rows of epochs after the checkpoint (written before a kill)."""
    rows, fields = _read_csv(path)
    if fields:
        _write_csv(path, [r for r in rows if int(r["epoch"]) < epochs_done], fields)


def epoch_learning_rate(optimizer):
    """The rate of the epoch's last step. ``optimizer.learning_rate`` is the rate of
    the *next* step: one epoch ahead where a schedule decays at an epoch's end."""
    schedule = getattr(optimizer, "_learning_rate", None)  # no public getter in Keras 3
    steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) and steps:
        rate = schedule(steps - 1)
    else:
        rate = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(rate))


@dataclasses.dataclass
class Phases:
    """How a run's epochs split into phases, each compiled its own way.

    Attributes:
        of_epoch: the phase name of an epoch.
        enter: ``enter(model, name)`` prepares ``model`` for a phase (trainable
            flags, `compile`, ``optimizer.build``): a phase has its own
            optimizer, so a checkpoint records its phase and is loaded into a
            model prepared for that phase.
        logged: whether ``metrics.csv`` gets a ``phase`` column.
    """

    of_epoch: Callable[[int], str]
    enter: Callable[[keras.Model, str], None]
    logged: bool = False


class TrainingLoop:
    """Epochs of ``model.fit``, checkpointed and resumable (see the module doc).

    Args:
        model: the built model (not compiled: ``phases.enter`` compiles it).
        recipe: the `Recipe` (epochs, seed, checkpoint_every, batch size...).
        args: the parsed `add_run_arguments` options.
        run_dir: the run folder (from `check_run_dir`).
        source: the data builder or its name.
        steps_per_epoch: from `count_steps`.
        config: what a checkpoint must match to be resumed (``{"recipe": ...}``).
        phases: a `Phases`.
    """

    def __init__(self, model, recipe, args, *, run_dir, source, steps_per_epoch, config,
                 phases):
        self.model, self.recipe, self.args = model, recipe, args
        self.run_dir, self.source, self.config = Path(run_dir), source, config
        self.steps_per_epoch, self.phases = steps_per_epoch, phases
        self.path = self.run_dir / CHECKPOINT
        self.csv_path = self.run_dir / "metrics.csv"
        self.phase = None
        self.normalize = normalization(model)

    def _enter(self, phase):
        if phase != self.phase:
            self.phases.enter(self.model, phase)
            self.phase = phase
            self._build_compiled_metrics()

    def _build_compiled_metrics(self):
        """Builds the compiled loss and metrics (symbolically) from one batch.

        Keras's `fit` builds them itself when they are not built yet, by drawing a
        batch from the training data and then starting it over: with a pipeline
        that reshuffles on every pass, the first `fit` after each `compile` would
        train on the data's *second* order. A resumed run's first `fit` can be any
        epoch, so it would see other batches than the uninterrupted run.
        """
        batch = pipeline(self.recipe, self.recipe.train_split, self.source, self.args,
                         training=False, normalize=self.normalize, drop_remainder=True)
        x, y = keras.tree.map_structure(np.asarray, next(iter(batch.take(1))))
        # What `train_on_batch` does first (Keras 3 has no public name for it): shapes
        # only, no compiled step, no weight or random state touched.
        self.model._symbolic_build(data_batch=(x, y))

    def start(self):
        """Prepares the first phase, or restores the checkpoint; returns the progress."""
        from training import checkpoint as ckpt

        if not (self.args.resume and self.path.exists()):
            self._enter(self.phases.of_epoch(0))
            return {"epoch": 0, "step": 0, "train_seconds": 0.0, "finished": False}
        saved = ckpt.read_progress(self.path)
        for key, value in self.config.items():
            if saved.get(key) != value:
                raise SystemExit(f"{self.path} was written with another {key}; refusing to "
                                 "resume (compare recipe.json with your options).")
        last = min(saved["epoch"], self.recipe.epochs - 1)
        self._enter(saved.get("phase") or self.phases.of_epoch(last))
        progress = ckpt.load_checkpoint(self.path, self.model)
        print(f"Resuming at epoch {progress['epoch'] + 1}, step {progress['step']} "
              f"({progress['train_seconds']:.0f} s trained).", flush=True)
        budget = self.args.time_budget
        if progress["finished"] and (budget is None or budget * 60.0 > progress["train_seconds"]):
            # Stopped by an earlier time budget; the budget given now leaves time.
            progress["finished"] = False
            print(f"The time budget is now {'none' if budget is None else f'{budget:g} min'}:"
                  " training continues.", flush=True)
        return progress

    def save(self, epoch, step, seconds, finished=False):
        from training import checkpoint as ckpt

        sync(self.model)
        ckpt.save_checkpoint(self.path, self.model, {
            "epoch": epoch, "step": step, "train_seconds": seconds, "finished": finished,
            "phase": self.phase, **self.config, "steps_per_epoch": self.steps_per_epoch,
            "backend": keras.config.backend()})

    def _monitor(self):
        split = self.recipe.monitor_split
        if not split:
            return None
        # With several devices every batch must split evenly: drop a last, smaller
        # batch (monitoring only; the final evaluation sees every cloud).
        data = pipeline(self.recipe, split, self.source, self.args, training=False,
                        normalize=self.normalize, drop_remainder=num_devices() > 1)
        return data if int(data.cardinality()) != 0 else None

    def run(self):
        """Trains to the last epoch (or the time budget); returns the progress."""
        recipe, args, model = self.recipe, self.args, self.model
        progress = self.start()
        about = {**recipe.to_dict(), **{k: v for k, v in self.config.items() if k != "recipe"}}
        (self.run_dir / "recipe.json").write_text(json.dumps(about, indent=2) + "\n")
        trim_csv(self.csv_path, progress["epoch"])
        monitor = self._monitor()
        budget = None if args.time_budget is None else args.time_budget * 60.0
        while progress["epoch"] < recipe.epochs and not progress["finished"]:
            epoch, first = progress["epoch"], progress["step"]
            self._enter(self.phases.of_epoch(epoch))
            start, done_before = time.monotonic(), progress["train_seconds"]
            deadline = None if budget is None else start + budget - done_before

            def save_step(step, epoch=epoch, start=start, done_before=done_before):
                self.save(epoch, step, done_before + time.monotonic() - start)

            callback = StepCheckpoint(save_step, recipe.checkpoint_every, first, deadline)
            print(f"Epoch {epoch + 1}/{recipe.epochs}" + (f" from step {first}" if first else "")
                  + (f" ({self.phase})" if self.phases.logged else ""), flush=True)
            logs = {}
            if first < self.steps_per_epoch:  # else killed after the epoch's last step
                data = pipeline(recipe, recipe.train_split, self.source, args, training=True,
                                normalize=self.normalize, seed=recipe.seed * 1000 + epoch)
                data = data.take(self.steps_per_epoch).skip(first)
                history = model.fit(data, epochs=1, verbose=args.verbose, shuffle=False,
                                    callbacks=[callback])  # the pipeline shuffles
                logs = {k: v[-1] for k, v in history.history.items()}
            seconds = done_before + time.monotonic() - start
            finished = callback.out_of_time
            if finished and callback.steps_done < self.steps_per_epoch:
                progress = {"epoch": epoch, "step": callback.steps_done,
                            "train_seconds": seconds, "finished": True}
                self.save(epoch, callback.steps_done, seconds, finished=True)
                break
            val = {} if monitor is None else model.evaluate(monitor, verbose=0,
                                                            return_dict=True)
            rate = epoch_learning_rate(model.optimizer)
            append_csv(self.csv_path, {
                "epoch": epoch, **({"phase": self.phase} if self.phases.logged else {}),
                "train_seconds": round(seconds, 1),
                "steps_in_metrics": callback.steps_done - first,
                "learning_rate": rate,
                **{f"train_{k}": round(float(v), 6) for k, v in logs.items()},
                **{f"monitor_{k}": round(float(v), 6) for k, v in val.items()}})
            progress = {"epoch": epoch + 1, "step": 0, "train_seconds": seconds,
                        "finished": finished}
            self.save(epoch + 1, 0, seconds, finished=finished)
        if progress["finished"]:
            # (Keras's verbose=2 line counts the whole epoch's steps even when stopped.)
            print(f"Stopped by the time budget at epoch {progress['epoch'] + 1}, step "
                  f"{progress['step']} ({progress['train_seconds'] / 3600:.2f} h trained).",
                  flush=True)
        return progress
