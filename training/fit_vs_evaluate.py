"""Does `fit` train the function that `evaluate` / `predict` report? A quick check on
real MNIST point clouds.

Trains `ddeq_mnist` for `--steps` steps (batch 64, Adam 1e-3, seed 42), then compares,
on held-out training batches, the accuracy of the training-mode forward pass with the
inference-mode one, and runs `evaluate` on the first `--test` test clouds. Prints one
JSON line. Needs the prepared `mnist_point_cloud` builder (see `training/prepare_data.py`).

Usage (from the repository root):

    KERAS_BACKEND=tensorflow python -m training.fit_vs_evaluate --data-dir /tmp/tfds \
        --solver anderson --max-steps 200 --steps 300
"""

import argparse
import json
import time

import keras
import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solver", default="anderson", choices=["anderson", "euler"])
    parser.add_argument("--max-steps", type=int, default=200, help="solver budget")
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--test", type=int, default=2000, help="test clouds to evaluate")
    parser.add_argument("--data-dir", required=True, help="TFDS data_dir of the prepared data")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(42)  # an entry point
    import ddeq_keras.datasets as dd
    from ddeq_keras.models import create_model

    train = dd.make_pipeline("mnist_point_cloud", "train", num_points=351, batch_size=64,
                             shuffle=True, seed=42, data_dir=args.data_dir,
                             drop_remainder=True)
    test = dd.make_pipeline("mnist_point_cloud", f"test[:{args.test}]", num_points=351,
                            batch_size=250, data_dir=args.data_dir)
    model = create_model("ddeq_mnist", build=False, seed=42, solver=args.solver,
                         max_steps=args.max_steps)
    model.compile()
    start = time.time()
    history = model.fit(train.take(args.steps), epochs=1, verbose=2).history
    seconds = time.time() - start

    def accuracy(x, y, training):
        logits = keras.ops.convert_to_numpy(model(x, training=training))
        return float(np.mean(np.argmax(logits, -1) == np.asarray(y)))

    held_out = list(train.skip(args.steps).take(4))
    logs = model.evaluate(test, verbose=0, return_dict=True)
    print(json.dumps({
        "backend": keras.config.backend(), "solver": args.solver, "max_steps": args.max_steps,
        "train_steps": args.steps, "train_time_s": round(seconds, 1),
        "fit_accuracy_epoch_mean": round(history["accuracy"][-1], 4),
        "fit_flow_converged": round(history["flow_converged"][-1], 4),
        "held_out_training_mode_accuracy": round(np.mean([accuracy(x, y, True)
                                                          for x, y in held_out]), 4),
        "held_out_inference_mode_accuracy": round(np.mean([accuracy(x, y, False)
                                                           for x, y in held_out]), 4),
        "evaluate": {k: round(float(v), 4) for k, v in logs.items()},
    }))


if __name__ == "__main__":
    main()
