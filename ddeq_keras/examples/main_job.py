"""`python -m ddeq_keras`: the pretrained MNIST DDEQ, used and fine-tuned, offline.

1. loads the zoo's pretrained ``ddeq_mnist`` in one call (`ddeq_keras.from_pretrained`);
2. classifies a few bundled real MNIST test clouds (`data/mnist_test_clouds.npz`) and
   prints each prediction with its solver statistics (map evaluations, whether the
   flow converged, the solver's result code);
3. fine-tunes it briefly on a bundled folder of point sets of another task
   (`data/shapes`: circles, crosses and triangles, ``.npy`` files of 60-160
   points): a new 3-class head on the pretrained backbone, the backbone frozen,
   then evaluates the held-out sets;
4. writes ``particles.png``: clouds with their particles at the start and at the
   equilibrium of the flow, and saves the fine-tuned model as a preset folder that
   ``from_pretrained`` loads.

Runs in a few minutes on 2 CPU cores with any backend (``KERAS_BACKEND``).
"""

import argparse
import importlib.util
import time
from importlib import resources
from pathlib import Path

import keras
import numpy as np

DATA = resources.files("ddeq_keras.examples") / "data"
SHAPES = ("circle", "cross", "triangle")


def bundled_mnist_clouds():
    """The bundled real MNIST test clouds: (list of ``(n, 2)`` arrays, labels)."""
    with resources.as_file(DATA / "mnist_test_clouds.npz") as path, np.load(path) as data:
        points, counts, labels = data["points"], data["counts"], data["labels"]
    # The clouds are stored end to end: cloud i is the next counts[i] rows.
    return np.split(points, np.cumsum(counts)[:-1]), labels.astype(int)


def bundled_shapes(held_out_per_class=3):
    """The bundled shapes folder, read with the library's point-file reader and split
    per class: ((train clouds, labels), (test clouds, labels))."""
    from ddeq_keras.datasets.readers import read_point_file

    train, test = ([], []), ([], [])
    with resources.as_file(DATA / "shapes") as root:
        for label, name in enumerate(SHAPES):
            files = sorted((Path(root) / name).glob("*.npy"))
            for i, path in enumerate(files):
                split = test if i >= len(files) - held_out_per_class else train
                split[0].append(read_point_file(path))
                split[1].append(label)
    return [(clouds, np.array(labels)) for clouds, labels in (train, test)]


def classify(model, batch, labels):
    """Prints each cloud's prediction and solver statistics.

    One compiled solve of the backbone gives the particles and the statistics;
    the head (pooling and a dense layer) then runs on those particles.

    Returns:
        ``(accuracy, solution)``: the solution (``"particles"``, ``"stats"``) is
        reused for the figure.
    """
    solution = keras.tree.map_structure(np.asarray, model.backbone.predict_on_batch(batch))
    logits = model.head(model.pool(solution["particles"]))
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    stats = solution["stats"]
    counts = np.asarray(batch["mask"]).astype(bool).sum(axis=1)
    rel = stats["mmd_final"] / np.maximum(stats["mmd_initial"], 1e-30)
    names = getattr(model, "class_names", None) or [str(i) for i in range(probabilities.shape[1])]
    print(f"{'cloud':>5} {'points':>6} {'true':>8} {'predicted':>9} {'prob':>5} "
          f"{'map evals':>9} {'rel MMD^2':>9} {'converged':>9} {'result':>6}")
    for i, (count, label) in enumerate(zip(counts, labels)):
        guess = int(np.argmax(probabilities[i]))
        print(f"{i:>5} {count:>6} {names[label]:>8} {names[guess]:>9} "
              f"{probabilities[i, guess]:>5.2f} {int(stats['num_evaluations'][i]):>9} "
              f"{rel[i]:>9.1e} {str(bool(stats['converged'][i])):>9} "
              f"{int(stats['result'][i]):>6}")
    accuracy = float(np.mean(np.argmax(probabilities, axis=-1) == labels))
    print(f"accuracy {accuracy:.1%} on {len(labels)} clouds; mean map evaluations "
          f"{stats['num_evaluations'].mean():.1f}; converged "
          f"{stats['converged'].mean():.0%} (result 0 = converged, 1 = out of budget, "
          "2 = non-finite, 3 = diverged)")
    return accuracy, solution


def fine_tune(model, epochs, learning_rate):
    """A 3-class model on the backbone of ``model`` (frozen), trained on the shapes."""
    (train, train_labels), (test, test_labels) = bundled_shapes()
    shapes = model.with_new_head(len(SHAPES), class_names=list(SHAPES))
    shapes.backbone.trainable = False  # the pretrained features stay as they are
    shapes.compile(optimizer=keras.optimizers.Adam(learning_rate),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    print(f"\nFine-tuning a new {len(SHAPES)}-class head on {len(train)} bundled point sets "
          f"({', '.join(SHAPES)}), backbone frozen, {epochs} epochs:")
    start = time.perf_counter()
    history = shapes.fit(shapes.preprocess(train), train_labels, batch_size=len(train),
                         epochs=epochs, shuffle=True, verbose=0)
    print(f"  {time.perf_counter() - start:.0f} s; training loss "
          f"{history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}, "
          f"accuracy {history.history['accuracy'][-1]:.0%}")
    print(f"Held-out point sets ({len(test)}):")
    accuracy, _ = classify(shapes, shapes.preprocess(test), test_labels)
    return shapes, accuracy


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m ddeq_keras", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="ddeq_mnist",
                        help="a zoo name, preset folder or hf://owner/name (default ddeq_mnist)")
    parser.add_argument("--output-dir", default="ddeq_main_job",
                        help="where particles.png and the fine-tuned preset go")
    parser.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs")
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    """Runs the job; returns ``{"mnist_accuracy", "shapes_accuracy", "preset",
    "reloaded_identical", "figure"}`` (the figure is None without matplotlib)."""
    args = build_parser().parse_args(argv)
    keras.utils.set_random_seed(args.seed)  # the entry point sets Keras state
    import ddeq_keras

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Keras {keras.__version__}, backend {keras.config.backend()}")
    start = time.perf_counter()
    model = ddeq_keras.from_pretrained(args.preset)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    print(f"Loaded {args.preset!r} in {time.perf_counter() - start:.1f} s: "
          f"{type(model).__name__}, {trainable:,} trainable parameters, "
          f"solver {model.backbone.solver!r}")

    clouds, labels = bundled_mnist_clouds()
    print(f"\nBundled real MNIST test clouds ({len(clouds)}):")
    batch = model.preprocess(clouds)
    accuracy, solution = classify(model, batch, labels)
    summary = {"mnist_accuracy": accuracy}

    shapes, summary["shapes_accuracy"] = fine_tune(model, args.epochs, args.learning_rate)
    preset = shapes.save_to_preset(out / "shapes_preset")
    reloaded = ddeq_keras.from_pretrained(preset)
    same = all(np.array_equal(a, b) for a, b in zip(reloaded.get_weights(), shapes.get_weights()))
    print(f"\nSaved the fine-tuned model to {preset}/ (reloads with "
          f"ddeq_keras.from_pretrained: identical weights {same})")
    summary.update(preset=preset, reloaded_identical=same, figure=None)

    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed (pip install 'ddeq-keras[all]'): no figure.")
        return summary
    from ddeq_keras.examples.figures import plot_particles

    names = [f"digit {label} ({len(c)} points)" for c, label in zip(clouds[:3], labels[:3])]
    path = plot_particles(model.backbone, batch, out / "particles.png", titles=names,
                          solution=solution)
    print(f"Wrote {path}: three clouds and their particles, start -> equilibrium.")
    print(f"Done in {time.perf_counter() - start:.0f} s.")
    summary["figure"] = path
    return summary


if __name__ == "__main__":
    main()
