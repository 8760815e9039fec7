"""The standard checks every registered model passes (in the spirit of keras-hub's
``run_backbone_test`` / ``run_model_saving_test``), and tiny configurations of each.

`tests/test_standard_checks.py` runs them on every name of `list_models()`.
"""

import keras
import numpy as np
from keras import ops

from conftest import BACKEND, to_numpy
from ddeq_keras.models import create_model

DDEQ_TINY = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=16,
                 max_steps=12)
TINY = {
    "ddeq_mnist": DDEQ_TINY,
    "ddeq_modelnet40": DDEQ_TINY,
    "ddeq_mnist_completion": DDEQ_TINY,
    "pointnet_mnist": dict(point_mlp_units=(16, 16), feature_mlp_units=(16, 32),
                           head_units=(32, 16), transform_mlp_units=(8, 16),
                           transform_head_units=(16,)),
    "set_transformer_mnist": dict(hidden_dim=32, num_heads=4, num_inducing_points=4, ff_dim=32),
    "pcn_mnist_completion": dict(encoder_units=((16, 32), (32, 64)), decoder_units=(64,),
                                 num_output_points=16),
}
TINY["pointnet_modelnet40"] = TINY["pointnet_mnist"]
TINY["set_transformer_modelnet40"] = TINY["set_transformer_mnist"]

# Variables that get no gradient by design, with the reason (none today: the
# completer's coupling scale network, which cannot learn, is non-trainable).
UNUSED_BY_DESIGN = {}


def is_completion(name):
    return "completion" in name


def tiny_model(name, **overrides):
    """A registered model at tiny widths (same structure), unbuilt."""
    return create_model(name, build=False, **{**TINY[name], **overrides})


def batch_for(model, name, rng, batch=3, n=20, valid=(20, 14, 9)):
    """``(x, y)``: a masked batch and its targets (labels, or complete clouds)."""
    d = model.point_dim
    full = rng.normal(size=(batch, n, d)).astype("float32")
    mask = np.arange(n)[None, :] < np.array(valid)[:, None]
    if is_completion(name):
        # The observed part: the points on one side of a random line.
        observed = np.logical_and(mask, full[..., 0] < 0.3)
        observed[:, 0] = True
        x = {"points": np.where(observed[..., None], full, 0).astype("float32"),
             "mask": observed}
        y = {"points": np.where(mask[..., None], full, 0).astype("float32"), "mask": mask}
        return x, y
    x = {"points": np.where(mask[..., None], full, 0).astype("float32"), "mask": mask}
    return x, np.arange(batch, dtype="int32") % 3


def loss_of(model, name, x, y, y_pred):
    """A plain loss of the model's task (no metrics, no Keras state touched)."""
    if name.startswith("pcn"):
        from ddeq_keras.models.baselines.pcn import masked_chamfer

        return ops.mean(masked_chamfer(y, y_pred))
    if is_completion(name):
        return ops.mean(model.completion_loss(y, y_pred))
    return ops.mean(keras.losses.sparse_categorical_crossentropy(y, y_pred, from_logits=True))


def custom_loop_gradients(model, name, x, y):
    """Gradients of the task loss w.r.t. every trainable variable, in each backend's own
    custom-training idiom, calling the model with ``training`` left unset."""
    variables = model.trainable_variables
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(model, name, x, y, model(x))
        grads = tape.gradient(loss, variables)
    elif BACKEND == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_fn(values):
            y_pred, _ = model.stateless_call(values, non_trainable, x)
            return loss_of(model, name, x, y, y_pred)

        grads = jax.grad(loss_fn)([v.value for v in variables])
    else:
        import torch

        loss = loss_of(model, name, x, y, model(x))
        grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
    return {v.path: None if g is None else to_numpy(g) for v, g in zip(variables, grads)}


def assert_every_variable_learns(name, grads):
    """Every trainable variable has a finite, non-zero gradient (unless listed)."""
    unused = UNUSED_BY_DESIGN.get(name, {})
    dead = [p for p, g in grads.items()
            if not any(key in p for key in unused) and (g is None or not np.any(g != 0))]
    bad = [p for p, g in grads.items() if g is not None and not np.all(np.isfinite(g))]
    assert not dead, f"{name}: no gradient reaches {dead}"
    assert not bad, f"{name}: non-finite gradient for {bad}"


def fit_step_changes_every_variable(model, name, x, y):
    """`train_on_batch` with Adam: a variable moves iff it had a non-zero gradient
    (Adam moves every coordinate with a non-zero gradient by ~lr). Two steps:
    PointNet's T-Net starts from a zero output layer (the identity transform), so
    its hidden layers get their first gradient in the second step."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build(keras.tree.map_structure(lambda a: a.shape, x))
    before = {v.path: to_numpy(v) for v in model.trainable_variables}
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    return {v.path: to_numpy(v) - before[v.path] for v in model.trainable_variables}


def outputs_of(model, x):
    """The model's inference outputs as a NumPy array (the points for completers)."""
    out = model(x, training=False)
    return to_numpy(out["points"] if isinstance(out, dict) else out)


def permuted_and_padded(x, rng, pad=7):
    """The same clouds with their points permuted, and with extra padding rows."""
    n = x["points"].shape[1]
    perm = rng.permutation(n)
    permuted = {"points": x["points"][:, perm], "mask": x["mask"][:, perm]}
    padded = {"points": np.pad(x["points"], ((0, 0), (0, pad), (0, 0)), constant_values=7.0),
              "mask": np.pad(x["mask"], ((0, 0), (0, pad)))}
    return permuted, padded
