"""Named model configurations (the authors' three DDEQs, plus the baselines).

`create_model("ddeq_mnist")` builds the architecture with fresh weights
(`ddeq_keras.from_pretrained` loads trained ones). Overrides are flat keyword
arguments, routed to where they belong: backbone arguments (``latent_dim``,
``dropout``, ...), the solver (``solver`` and that solver's own arguments:
``eta``, ``max_steps``, ``tol``, ``memory``, ...; an argument the solver does
not take is an error), the adjoint (``backward`` and ``phantom_steps``,
``phantom_damping``, ``implicit_max_steps``, ``implicit_tol``,
``implicit_method``) and the task (``num_classes``, ``growth``,
``on_nonconvergence``, ...).
"""

import inspect

from ddeq_keras.models.baselines import (
    PCNCompleter2D,
    PointNetClassifier,
    SetTransformerClassifier,
)
from ddeq_keras.models.ddeq import DDEQBackbone, DDEQClassifier, DDEQCompleter
from ddeq_keras.models.task import Task
from ddeq_keras.preprocessing import PointCloudPreprocessor
from ddeq_keras.solvers import get_adjoint, get_solver

__all__ = ["MODEL_CONFIGS", "create_model", "list_models"]

# name -> (class, constructor arguments, a typical input length for building)
MODEL_CONFIGS = {
    "ddeq_mnist": (
        DDEQClassifier, dict(num_classes=10, point_dim=2, num_cross_blocks=1), 351
    ),
    # ModelNet40 at the usual 1,024 surface points (the recipes' length; the
    # authors' 500-800-point voxel variant fits too, padded).
    "ddeq_modelnet40": (
        DDEQClassifier, dict(num_classes=40, point_dim=3, num_cross_blocks=3), 1024
    ),
    "ddeq_mnist_completion": (
        DDEQCompleter, dict(point_dim=2, num_cross_blocks=3, num_particles=None), 351
    ),
    # Baselines, for comparisons on the same data.
    "pointnet_mnist": (PointNetClassifier, dict(num_classes=10, point_dim=2), 351),
    "pointnet_modelnet40": (PointNetClassifier, dict(num_classes=40, point_dim=3), 1024),
    "set_transformer_mnist": (SetTransformerClassifier, dict(num_classes=10, point_dim=2), 351),
    "set_transformer_modelnet40": (
        SetTransformerClassifier, dict(num_classes=40, point_dim=3), 1024
    ),
    "pcn_mnist_completion": (PCNCompleter2D, dict(point_dim=2), 351),
}

# Flat adjoint overrides -> the adjoint's own argument names.
_ADJOINT_FLAT = {"phantom_steps": "steps", "phantom_damping": "damping",
                 "implicit_max_steps": "max_steps", "implicit_tol": "tol",
                 "implicit_method": "method"}


def list_models():
    """Names accepted by `create_model`."""
    return sorted(MODEL_CONFIGS)


def _parameters(cls):
    return set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "backbone"}


def build_ddeq(task_cls, arguments):
    """A DDEQ task from flat arguments (backbone, solver, adjoint and task ones)."""
    arguments = dict(arguments)
    backbone_names = _parameters(DDEQBackbone) - {"solver", "backward"}
    task_names = _parameters(task_cls) | _parameters(Task)  # e.g. on_nonconvergence
    backbone_args = {k: arguments.pop(k) for k in list(arguments) if k in backbone_names}
    task_args = {k: arguments.pop(k) for k in list(arguments) if k in task_names}
    solver = arguments.pop("solver", "anderson")
    backward = arguments.pop("backward", "phantom")
    adjoint_args = {_ADJOINT_FLAT[k]: arguments.pop(k) for k in list(arguments)
                    if k in _ADJOINT_FLAT}
    # What is left belongs to the solver; get_solver rejects what it does not take.
    solver = get_solver(solver, **arguments) if isinstance(solver, str) or arguments else solver
    backward = get_adjoint(backward, **adjoint_args) if isinstance(backward, str) or \
        adjoint_args else backward
    backbone = DDEQBackbone(solver=solver, backward=backward, **backbone_args)
    return task_cls(backbone, **task_args)


def create_model(name, build=True, **overrides):
    """A model of a named configuration, with fresh weights.

    Args:
        name: one of `list_models()`.
        build: create the weights now (for a typical input length).
        **overrides: arguments to change (see the module docstring), e.g.
            ``max_steps=50`` or ``solver="euler", eta=1.0``.

    Returns:
        The task (a `keras.Model`); DDEQ tasks come with a
        `PointCloudPreprocessor` for the configuration's input length.

    Example:
    >>> from ddeq_keras.models import create_model
    >>> create_model("ddeq_mnist").count_params()
    774394
    >>> create_model("ddeq_mnist", build=False, solver="euler", eta=1.0).backbone.solver.eta
    1.0
    """
    try:
        cls, config, length = MODEL_CONFIGS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; known: {list_models()}.") from None
    arguments = {**config, **overrides}
    if cls in (DDEQClassifier, DDEQCompleter):
        arguments.setdefault("preprocessor", PointCloudPreprocessor(
            arguments["point_dim"], num_points=length, normalize="std"))
        model = build_ddeq(cls, arguments)
    else:
        model = cls(**arguments)
    if build:
        model.build({"points": (None, length, model.point_dim), "mask": (None, length)})
    return model
