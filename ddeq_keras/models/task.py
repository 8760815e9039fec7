"""`Task`: what every DDEQ task shares (backbone, preprocessor, saving, raw clouds)."""

import keras
from keras import ops

from ddeq_keras.models.inputs import check_batch, check_dtypes
from ddeq_keras.preprocessing import PointCloudPreprocessor
from ddeq_keras.solvers import DIVERGED, NON_FINITE, report_nonconvergence
from ddeq_keras.solvers.convergence import check_on_nonconvergence

# What `predict_step` returns of the solver's statistics: one value per sample.
_PER_SAMPLE_STATS = ("num_steps", "num_evaluations", "mmd_initial", "mmd_final", "converged",
                     "result")


class Task(keras.Model):
    """Base of the DDEQ tasks: a backbone, an optional preprocessor, a thin head.

    - ``task.backbone`` computes the equilibrium particles, ``task.preprocessor``
      (a `PointCloudPreprocessor`) holds the normalisation the model was trained
      with.
    - `predict`, `evaluate` and `fit` accept *raw clouds* (one ``(n, d)`` array
      or a list of arrays of different sizes): the preprocessor packs and
      normalises them first. Batches given as ``{"points", "mask"}`` dicts or
      datasets are taken as already preprocessed (the training pipeline
      applies the same normalisation), and calling the model directly
      (``task(batch)``) expects preprocessed batches too. NumPy batches are
      checked on the host first (NaN / out-of-range coordinates, empty
      masks: a ``ValueError`` naming them), since compiled steps cannot.
    - Non-convergence is never silent in `predict` / `predict_on_batch`: each
      sample's solver result code comes back with the outputs, and samples
      that did not converge (out of budget, non-finite, diverged; see
      `Solution`) are reported by ``on_nonconvergence``: ``"warn"`` (default)
      a `NonConvergenceWarning`, ``"raise"`` a `NonConvergenceError`,
      ``"ignore"`` nothing. Set it at construction, as the attribute (it is
      saved in the config), or per call (``predict(x,
      on_nonconvergence="raise")``). The codes are a ``(batch,)`` int32
      output of the compiled step, read after it, so the check costs no device
      synchronisation inside the solve (measured: no difference in predict
      time) and "warn" can be the default. Calling the model directly returns
      no statistics: use ``task.backbone(x)["stats"]`` and
      `ddeq_keras.solvers.report_nonconvergence`.
    - `keras.saving.load_model` restores the compiled state (optimizer
      included), although the tasks override `compile` with ``"auto"``
      defaults.
    - The solver statistics of each forward pass appear in the `fit` /
      `evaluate` logs: ``flow_steps`` (mean updates per sample),
      ``flow_rel_mmd`` (mean final ``MMD^2`` relative to the initial one),
      ``flow_converged`` (share of samples that met the tolerance),
      ``flow_non_finite`` (share stopped by NaN/inf) and ``flow_diverged``
      (share stopped for divergence).

    Args:
        backbone: a `DDEQBackbone`.
        preprocessor: a `PointCloudPreprocessor` or None.
        on_nonconvergence: ``"warn"``, ``"raise"`` or ``"ignore"`` (see above).
        **kwargs: base `keras.Model` arguments.
    """

    def __init__(self, backbone, preprocessor=None, on_nonconvergence="warn", **kwargs):
        super().__init__(**kwargs)
        if preprocessor is not None and not isinstance(preprocessor, PointCloudPreprocessor):
            raise ValueError(
                "`preprocessor` must be a PointCloudPreprocessor or None; got "
                f"{type(preprocessor).__name__}."
            )
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.flow_steps_tracker = keras.metrics.Mean(name="flow_steps")
        self.flow_rel_mmd_tracker = keras.metrics.Mean(name="flow_rel_mmd")
        self.flow_converged_tracker = keras.metrics.Mean(name="flow_converged")
        self.flow_non_finite_tracker = keras.metrics.Mean(name="flow_non_finite")
        self.flow_diverged_tracker = keras.metrics.Mean(name="flow_diverged")
        self._flow_stats = None
        self.on_nonconvergence = on_nonconvergence

    @property
    def on_nonconvergence(self):
        """What `predict` does about samples that did not converge (see class doc)."""
        return self._on_nonconvergence

    @on_nonconvergence.setter
    def on_nonconvergence(self, value):
        self._on_nonconvergence = check_on_nonconvergence(value)

    @property
    def point_dim(self):
        return self.backbone.point_dim

    def __call__(self, inputs, *args, **kwargs):
        inputs = check_dtypes(inputs)  # before Keras converts them (see check_dtypes)
        return super().__call__(inputs, *args, **kwargs)

    # -- raw clouds ---------------------------------------------------------
    def preprocess(self, clouds):
        """Raw clouds -> the ``{"points", "mask"}`` NumPy batch the model takes."""
        preprocessor = self.preprocessor or PointCloudPreprocessor(
            self.point_dim, normalize=None, dtype=self.dtype_policy
        )
        return keras.tree.map_structure(ops.convert_to_numpy, preprocessor(clouds))

    def _raw(self, x):
        # A list is never a batch (batches are dicts or arrays): the
        # preprocessor names whichever cloud of it is wrong.
        if isinstance(x, (list, tuple)) or PointCloudPreprocessor.is_raw(x):
            x = self.preprocess(x)
        check_batch(x, self.point_dim)
        return x

    def predict(self, x, *args, on_nonconvergence=None, **kwargs):
        """`keras.Model.predict`, on raw clouds too, reporting non-convergence.

        Args:
            x: raw clouds (see class doc), a batch, a dataset.
            *args, **kwargs: `keras.Model.predict` arguments.
            on_nonconvergence: overrides the task's ``on_nonconvergence`` for
                this call.
        """
        policy = check_on_nonconvergence(
            self.on_nonconvergence if on_nonconvergence is None else on_nonconvergence)
        outputs, stats = super().predict(self._raw(x), *args, **kwargs)
        self._report(stats, policy, "predict")
        return outputs

    def predict_on_batch(self, x, on_nonconvergence=None, return_stats=False):
        """`keras.Model.predict_on_batch`, on raw clouds too, reporting non-convergence.

        Args:
            x: raw clouds or a batch.
            on_nonconvergence: overrides the task's ``on_nonconvergence``.
            return_stats: also return the solver's per-sample statistics, a
                dict of ``(batch,)`` NumPy arrays (``num_steps``,
                ``num_evaluations``, ``mmd_initial``, ``mmd_final``,
                ``converged``, ``result``), from the same compiled call.

        Returns:
            The outputs, or ``(outputs, stats)`` with ``return_stats``.
        """
        policy = check_on_nonconvergence(
            self.on_nonconvergence if on_nonconvergence is None else on_nonconvergence)
        outputs, stats = super().predict_on_batch(self._raw(x))
        self._report(stats, policy, "predict_on_batch")
        if return_stats:
            return outputs, keras.tree.map_structure(ops.convert_to_numpy, stats)
        return outputs

    def predict_step(self, *args, **kwargs):
        # The solver's per-sample statistics (a few small (batch,) tensors)
        # travel with the outputs, so `predict` can report non-convergence
        # after the compiled step. ``call`` records them during this trace.
        self._flow_stats = None
        out = super().predict_step(*args, **kwargs)
        stats, self._flow_stats = self._flow_stats, None
        stats = {key: stats[key] for key in _PER_SAMPLE_STATS}
        if keras.config.backend() == "jax":  # (outputs, non-trainable state)
            outputs, state = out
            return (outputs, stats), state
        return out, stats

    def _report(self, stats, policy, where):
        report_nonconvergence(ops.convert_to_numpy(stats["result"]), policy,
                              solver=self.backbone.solver, where=where, stacklevel=4)

    def evaluate(self, x=None, *args, **kwargs):
        return super().evaluate(self._raw(x), *args, **kwargs)

    def fit(self, x=None, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        report = getattr(self.backbone.backward, "report", None)
        if report is not None:  # the implicit adjoint's statistics in the logs
            callbacks.insert(0, AdjointLogger(report))
        return super().fit(self._raw(x), *args, callbacks=callbacks, **kwargs)

    # -- solver statistics in the logs ---------------------------------------
    def _record_flow_stats(self, stats):
        # `call` stores them; `compute_loss` (same traced step on every
        # backend) folds them into the metrics.
        self._flow_stats = stats

    def _update_solver_metrics(self):
        stats, self._flow_stats = self._flow_stats, None
        if stats is not None:
            self.update_solver_metrics(stats)

    def update_solver_metrics(self, stats):
        """Folds per-sample solver statistics into the `flow_*` metrics.

        ``fit`` and ``evaluate`` do this in every step; call it to log
        statistics returned by ``predict_on_batch(x, return_stats=True)``
        (an evaluation that computes its loss and metrics from its own
        predictions, as `training.evaluate` does).

        Args:
            stats: dict with the per-sample ``num_steps``, ``mmd_initial``,
                ``mmd_final``, ``converged`` and ``result`` of one batch.
        """
        initial = ops.maximum(stats["mmd_initial"], 1e-30)
        rel = stats["mmd_final"] / initial
        # A sample whose very first evaluation was NaN has no finite MMD: it is
        # counted by flow_non_finite and left out of the mean (one NaN would
        # turn the epoch's mean into NaN).
        finite = ops.isfinite(rel)
        self.flow_steps_tracker.update_state(ops.cast(stats["num_steps"], "float32"))
        self.flow_rel_mmd_tracker.update_state(ops.where(finite, rel, ops.zeros_like(rel)),
                                               sample_weight=ops.cast(finite, rel.dtype))
        self.flow_converged_tracker.update_state(ops.cast(stats["converged"], "float32"))
        self.flow_non_finite_tracker.update_state(
            ops.cast(stats["result"] == NON_FINITE, "float32"))
        self.flow_diverged_tracker.update_state(ops.cast(stats["result"] == DIVERGED, "float32"))

    # -- presets -------------------------------------------------------------
    @classmethod
    def from_preset(cls, name_or_path, revision=None):
        """Loads a pretrained task: a registry name, a folder or ``hf://owner/name[@rev]``.

        See `ddeq_keras.from_pretrained`; the preset must hold this class.
        """
        from ddeq_keras.presets import load_preset

        return load_preset(name_or_path, revision, expected_class=cls)

    def preset_metadata(self):
        """What `config.json` states besides the Keras config, for people and tools."""
        pre = self.preprocessor
        return {
            "task": type(self).__name__,
            "point_dim": self.point_dim,
            "num_points": None if pre is None else pre.num_points,
            "normalization": None if pre is None else pre.normalize,
            "class_names": getattr(self, "class_names", None),
            "solver": repr(self.backbone.solver),
            "backward": repr(self.backbone.backward),
        }

    def save_to_preset(self, folder, *, metrics=None, card_info=None):
        """Writes this (built) task as a preset folder (the zoo / Hub format).

        Args:
            folder: where to write `config.json`, `model.safetensors`,
                `README.md` (the model card) and, with ``metrics``,
                `metrics.json`.
            metrics: measured records (dataset, split, metric, value, backend,
                hardware, date, command), from which the card's table is made.
            card_info: what the card says beyond the config (training recipe and
                command, limitations, Hub repo id), see `ddeq_keras.presets.card`.

        Returns:
            The folder, as a `pathlib.Path`.
        """
        from ddeq_keras.presets import save_preset

        return save_preset(self, folder, metadata=self.preset_metadata(), metrics=metrics,
                           card_info=card_info)

    # -- saving ----------------------------------------------------------------
    # Keras saves no random-generator state, so a resumed run would draw other
    # particle noise and dropout masks than the uninterrupted one. The task
    # saves the state of every seed generator in the model with its own
    # variables, so that training resumes exactly.
    _SEED_KEY = "seed_state_"

    def _seed_states(self):
        return [g.state for layer in self._flatten_layers(include_self=True)
                for g in getattr(layer, "_seed_generators", [])]

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for i, state in enumerate(self._seed_states()):
            store[f"{self._SEED_KEY}{i}"] = state

    def load_own_variables(self, store):
        keys = list(store.keys())
        super().load_own_variables(
            {k: store[k] for k in keys if not k.startswith(self._SEED_KEY)})
        states = self._seed_states()
        saved = [k for k in keys if k.startswith(self._SEED_KEY)]
        if saved and len(saved) == len(states):  # older files have none
            for i, state in enumerate(states):
                state.assign(store[f"{self._SEED_KEY}{i}"])

    def compile_from_config(self, config):
        # Keras skips this step for models that override `compile`; the tasks
        # do (for their "auto" defaults), so restore it: a loaded model comes
        # back compiled, with its optimizer state.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        backbone = keras.saving.serialize_keras_object(self.backbone)
        # Built by the task's own `build`, under the task's name scope, so that
        # variable paths are the same for a fresh and for a loaded model.
        backbone.pop("build_config", None)
        config.update({
            "backbone": backbone,
            "on_nonconvergence": self.on_nonconvergence,
            "preprocessor": None if self.preprocessor is None
            else keras.saving.serialize_keras_object(self.preprocessor),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("preprocessor") is not None:
            config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)


class AdjointLogger(keras.callbacks.Callback):
    """Adds the implicit adjoint's statistics to the `fit` logs.

    ``adjoint_steps`` (mean iterations of the adjoint solve per sample) and
    ``adjoint_fallback`` (share of samples that fell back to the phantom
    gradient), running means over the epoch like Keras's metrics.
    """

    def __init__(self, report):
        super().__init__()
        self.report = report

    def on_epoch_begin(self, epoch, logs=None):
        self.report.reset()

    def _add(self, logs):
        if logs is None:
            return
        # The backward pass reports from the device when its values exist:
        # reading the loss waits for the step to finish.
        if "loss" in logs:
            float(logs["loss"])
        logs.update(self.report.means())

    def on_train_batch_end(self, batch, logs=None):
        self._add(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._add(logs)
