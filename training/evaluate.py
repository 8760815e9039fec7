"""Evaluate a preset or a training checkpoint on a dataset split -> `metrics.json`.

Classification: accuracy, mean per-class accuracy, per-class accuracy and the
confusion matrix; completion: Chamfer distance, and that of the partial input
itself (`chamfer_distance_input_only`: the score of returning the input unchanged),
and for a model that adds points to its input (the DDEQ completer) how spread out the
added points are (`generated_spread`) next to the points the cut removed
(`missing_spread`): a completer whose new points all coincide scores 0.
Both: the solver's mean number of steps per sample and the fraction of samples
converged (DDEQ models), throughput
(clouds per second of `predict_on_batch`, the first, compiling batch excluded) and
the hardware. Writes ``metrics.json`` (the zoo's records: one scalar per row) and
``evaluation.json`` (everything, confusion matrix included) to ``--out``.

Examples (from the repository root)::

    python -m training.evaluate --preset zoo/ddeq_mnist --dataset mnist_point_cloud \\
        --split test --data-dir ~/tensorflow_datasets --out runs/eval_mnist
    python -m training.evaluate --checkpoint runs/ddeq_mnist --split test[:2000] ...
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import keras
import numpy as np

# The zoo's dataset names of the builders.
DATASET_NAMES = {"mnist_point_cloud": "mnist_point_cloud", "modelnet40/hdf5": "modelnet40",
                 "modelnet40": "modelnet40", "point_set_folder": "point_set_folder"}


def hardware():
    from training.bench.machine import machine_info

    return machine_info()["device"]


def input_only_chamfer(data, squared=False):
    """Mean Chamfer distance between each partial input and its complete cloud.

    The score of a "completer" that returns its input unchanged: the reference a
    completion model's ``chamfer_distance`` must beat to have added anything.
    ``data`` yields ``(x, y)`` completion batches (``{"points", "mask"}`` each).
    """
    from ddeq_keras.ops import chamfer_distance

    values = [keras.ops.convert_to_numpy(chamfer_distance(
        np.asarray(x["points"]), np.asarray(y["points"]), np.asarray(x["mask"]),
        np.asarray(y["mask"]), squared=squared)) for x, y in data]
    return float(np.mean(np.concatenate(values)))


def _rms_spread(points):
    """Root-mean-square distance of ``points`` (n, d) from their centroid."""
    return float(np.sqrt(np.mean(np.sum((points - points.mean(0)) ** 2, axis=-1))))


def completion_spread(inputs, outputs, targets):
    """Mean spread of the added points and of the removed ones, over the clouds.

    ``generated_spread``: per cloud, the RMS distance of the points a completer
    added (its ``"generated"`` output) from their centroid; ``missing_spread``: the
    same for the complete cloud's points that are not in the partial input (what
    the added points should cover). Clouds with fewer than two such points are
    left out. ``generated_spread`` is None for models without a ``"generated"``
    output (PCN makes a whole new cloud).
    """
    generated, missing = [], []
    for x, out, y in zip(inputs, outputs, targets):
        for i in range(len(np.asarray(x["points"]))):
            partial = np.asarray(x["points"][i])[np.asarray(x["mask"][i], bool)]
            complete = np.asarray(y["points"][i])[np.asarray(y["mask"][i], bool)]
            gap = (np.min(np.linalg.norm(complete[:, None] - partial[None], axis=-1), axis=1)
                   if len(partial) else np.full(len(complete), np.inf))
            if np.sum(gap > 1e-6) >= 2:
                missing.append(_rms_spread(complete[gap > 1e-6]))
            if isinstance(out, dict) and "generated" in out:
                new = np.asarray(out["points"][i])[np.asarray(out["generated"][i], bool)]
                if len(new) >= 2:
                    generated.append(_rms_spread(new))
    return (float(np.mean(generated)) if generated else None,
            float(np.mean(missing)) if missing else None)


def _predict_all(model, data):
    """One pass of `predict_on_batch` over ``data``, updating the model's metrics.

    Returns inputs, outputs, targets, clouds per second and the logs `evaluate`
    would give (loss, the compiled metrics, the solver's statistics), computed from
    the same predictions: a second pass would double the cost of an evaluation
    whose every batch runs the solver to convergence.
    """
    inputs, outputs, targets, seconds, counted = [], [], [], 0.0, 0
    loss_sum, clouds = 0.0, 0
    solver_stats = hasattr(model, "flow_steps_tracker")  # a DDEQ task
    model.reset_metrics()
    for i, (x, y) in enumerate(data):
        # NumPy batches: a tf.data pipeline yields TensorFlow tensors, which
        # `predict_on_batch` takes only on the TensorFlow backend.
        x = keras.tree.map_structure(np.asarray, x)
        y = keras.tree.map_structure(np.asarray, y)
        start = time.perf_counter()
        out = (model.predict_on_batch(x, return_stats=True) if solver_stats
               else model.predict_on_batch(x))
        out = keras.tree.map_structure(keras.ops.convert_to_numpy, out)
        size = len(x["points"])
        if i:  # the first batch compiles
            seconds += time.perf_counter() - start
            counted += size
        if solver_stats:
            out, stats = out
            model.update_solver_metrics(stats)  # as `evaluate`'s step does
        # `evaluate`'s test step on these predictions: the loss (its batch mean,
        # weighted by the batch size as Keras's loss tracker does) and the metrics.
        loss = model.compute_loss(x=x, y=y, y_pred=out, training=False)
        model.compute_metrics(x, y, out)
        loss_sum += float(keras.ops.convert_to_numpy(loss)) * size
        clouds += size
        inputs.append(x)
        outputs.append(out)
        targets.append(y)
    logs = {k: float(keras.ops.convert_to_numpy(v))
            for k, v in model.get_metrics_result().items()}
    logs["loss"] = loss_sum / max(clouds, 1)
    throughput = round(counted / seconds, 2) if seconds else None  # one batch: no timing
    return inputs, outputs, targets, throughput, logs


def classification_report(logits, labels, class_names=None):
    """Accuracy, per-class accuracy and the confusion matrix (rows: true class)."""
    predictions = np.argmax(logits, axis=-1)
    num_classes = logits.shape[-1]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    support = confusion.sum(axis=1)
    present = support > 0
    per_class = np.where(present, np.diag(confusion) / np.maximum(support, 1), np.nan)
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "mean_class_accuracy": float(np.nanmean(per_class[present])),
        "per_class_accuracy": {names[i]: float(per_class[i]) for i in np.flatnonzero(present)},
        "class_names": names,
        "confusion_matrix": confusion.tolist(),
    }


def evaluate_model(model, data, *, dataset, split, task, command):
    """Evaluates ``model`` on batches ``data``; returns the full report.

    ``report["records"]`` are the `metrics.json` records, ``report["summary"]``
    the headline numbers.
    """
    inputs, outputs, targets, throughput, logs = _predict_all(model, data)
    summary = {"clouds": int(sum(len(np.asarray(t if task == "classification"
                                                else t["points"])) for t in targets)),
               "throughput_clouds_per_s": throughput}
    report = {}
    if task == "classification":
        logits = np.concatenate(outputs)
        labels = np.concatenate(targets).astype(np.int64)
        report.update(classification_report(logits, labels,
                                            getattr(model, "class_names", None)))
        summary.update(accuracy=report["accuracy"],
                       mean_class_accuracy=report["mean_class_accuracy"])
    else:
        summary["chamfer_distance"] = float(logs["chamfer_distance"])
        # The batches the predictions saw, not another pass over the pipeline.
        summary["chamfer_distance_input_only"] = input_only_chamfer(
            zip(inputs, targets), squared=bool(getattr(model, "chamfer_squared", False)))
        summary["generated_spread"], summary["missing_spread"] = completion_spread(
            inputs, outputs, targets)
    for key in ("flow_steps", "flow_converged", "flow_non_finite"):
        if key in logs:
            summary[key] = float(logs[key])
    summary["loss"] = float(logs["loss"])
    record = dict(dataset=DATASET_NAMES.get(dataset, dataset), split=split,
                  backend=keras.config.backend(), hardware=hardware(),
                  date=datetime.date.today().isoformat(), command=command)
    records = [dict(record, metric=k, value=round(v, 6) if isinstance(v, float) else v)
               for k, v in summary.items() if k != "clouds" and v is not None
               and np.isfinite(v)]
    records += [dict(record, metric=f"accuracy[{name}]", value=round(v, 6))
                for name, v in report.get("per_class_accuracy", {}).items()]
    report.update(summary=summary, records=records, hardware=record["hardware"],
                  backend=record["backend"], dataset=dataset, split=split)
    return report


def load_for_evaluation(preset=None, checkpoint=None, recipe_settings=()):
    """A model from a preset folder/name, or from a run folder's checkpoint.

    Returns:
        ``(model, recipe, options)``: the recipe of a checkpoint (None for a
        preset), and the builder options its data was prepared with (a
        fine-tuning run's `point_set_folder` options; else None).
    """
    if preset:
        import ddeq_keras

        model = ddeq_keras.from_pretrained(preset)
        model.compile()  # presets come uncompiled: the task's own loss and metrics
        return model, None, None
    from training import checkpoint as ckpt
    from training.loop import CHECKPOINT

    run_dir = Path(checkpoint)
    path = run_dir / CHECKPOINT if run_dir.is_dir() else run_dir
    progress = ckpt.read_progress(path)
    options = None
    if "finetune" in progress:  # a training.finetune run: its preset with its head
        from training.finetune import make_model as make_finetuned

        model, recipe = make_finetuned(progress)
        options = progress["finetune"].get("options")
    else:
        from training.train import make_model

        recipe = get_recipe_from_dict(progress["recipe"])
        model = make_model(recipe, progress["steps_per_epoch"])
    ckpt.load_checkpoint(path, model)
    return model, recipe, options


def _parse_option(text):
    from training.prepare_data import _parse_option as parse

    return parse(text)


def get_recipe_from_dict(fields):
    from training.recipes import Recipe

    return Recipe(**fields)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="zoo name, folder or hf://owner/name")
    source.add_argument("--checkpoint", help="a run folder or its checkpoint.safetensors")
    parser.add_argument("--dataset", help="builder (default: the checkpoint's recipe)")
    parser.add_argument("--task", choices=["classification", "completion"])
    parser.add_argument("--split", help="default: the checkpoint's evaluation split, or test")
    parser.add_argument("--num-points", type=int)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-dir")
    parser.add_argument("--manual-dir")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="builder option the data was prepared with (num_dims=2); "
                             "repeatable (a fine-tuning checkpoint brings its own)")
    parser.add_argument("--out", required=True, help="folder for metrics.json / evaluation.json")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)  # an entry point: fixed subsampling of large clouds

    import ddeq_keras.datasets as dd

    model, recipe, options = load_for_evaluation(args.preset, args.checkpoint)
    options = {**(options or {}), **dict(_parse_option(o) for o in args.option)}
    dataset = args.dataset or (recipe and recipe.dataset)
    split = args.split or (recipe.eval_split if recipe else "test")
    task = args.task or (recipe.task if recipe else "classification")
    pre = getattr(model, "preprocessor", None)
    num_points = args.num_points or (recipe and recipe.num_points) or (pre and pre.num_points)
    if not dataset or not num_points:
        raise SystemExit("error: pass --dataset and --num-points for this preset.")
    normalize = pre.normalize if pre is not None else "std"
    # With options, the builder config derived from them (named after their hash).
    source = dd.prepare(dataset, data_dir=args.data_dir, manual_dir=args.manual_dir,
                        options=options) if options else dataset
    data = dd.make_pipeline(source, split, num_points=num_points,
                            batch_size=args.batch_size, task=task, normalize=normalize,
                            data_dir=args.data_dir, manual_dir=args.manual_dir)
    command = "python -m training.evaluate " + " ".join(shlex.quote(a) for a in argv)
    report = evaluate_model(model, data, dataset=dataset, split=split, task=task,
                            command=command)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from ddeq_keras.presets.format import write_metrics

    write_metrics(report["records"], out)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
