"""Baseline models for honest comparisons with DDEQs (same data, same API).

- `PointNetClassifier`: PointNet (Qi et al., 2017), about 1.6M weights.
- `SetTransformerClassifier`: ISAB + PMA (Lee et al., 2019).
- `PCNCompleter2D`: PCN (Yuan et al., 2018) adapted to 2-D completion,
  trained and scored by the masked Chamfer distance.

All take ``{"points": (batch, n, d), "mask": (batch, n) bool}`` (or a plain
points tensor), honour the mask everywhere, and compile with sensible
defaults: ``model.compile()``.
"""

from ddeq_keras.models.baselines.pcn import (  # noqa: F401
    ChamferDistance,
    PCNCompleter2D,
    masked_chamfer,
)
from ddeq_keras.models.baselines.pointnet import (  # noqa: F401
    PointNetClassifier,
    PointNetTransform,
)
from ddeq_keras.models.baselines.set_transformer import (  # noqa: F401
    SetTransformerClassifier,
)

__all__ = [
    "ChamferDistance",
    "PCNCompleter2D",
    "PointNetClassifier",
    "PointNetTransform",
    "SetTransformerClassifier",
    "masked_chamfer",
]
