"""Set Transformer classifier (Lee et al., ICML 2019), masked."""

import keras
from keras import ops

from ddeq_keras.layers import ISAB, PMA
from ddeq_keras.layers._common import dropout_rate
from ddeq_keras.models.baselines import _base


@keras.saving.register_keras_serializable(package="ddeq_keras")
class SetTransformerClassifier(_base.ClassifierMixin, _base.BaselineModel):
    """Set Transformer point-cloud classifier (Lee et al., 2019), masked.

    The authors' point-cloud classifier::

        Dense(hidden_dim) per point -> num_isab x ISAB(hidden_dim, num_heads,
        num_inducing_points) -> Dropout -> PMA(num_seeds) -> Dropout
        -> Dense(num_classes) logits

    Each attention block is a `ddeq_keras.layers.CrossAttentionBlock`: the
    paper's MAB (attention, then a two-layer row-wise feed-forward net of
    width ``ff_dim``, each with a residual connection and LayerNorm).
    Differences from the authors' reference code, kept deliberately:

    - their first ISAB projects the raw ``d``-dim points inside its
      attention; here a per-point ``Dense(hidden_dim)`` does it, so every
      block has the same width;
    - their point-cloud model has no LayerNorm (``ln=False``), a one-layer
      rFF, and adds the *projected* query as the residual; here the blocks
      are pre-LN by default (``norm_first=True``: ``t + MHA(LN(t), ...)``,
      ``t + FF(LN(t))``), which, like the reference, keeps the residual
      stream unnormalised (post-LN normalises away each point's scale, and
      trained much less reliably in our tests); ``norm_first=False`` gives
      the paper's post-LN MAB.

    The dropout (0.5, ``torch.nn.Dropout``'s default, before and after the
    PMA) and the PMA without an rFF before it follow the reference code.

    Padded points (``mask`` False) are masked out as attention keys (in both
    ISAB stages and in the PMA), so the logits do not depend on padding, and
    they do not depend on the order of the points (up to float rounding in
    the softmax sums).

    Parameter count (measured): with the defaults, ``point_dim=3`` and
    ``num_classes=40``: 507,816 (all trainable); ``point_dim=2``,
    ``num_classes=10``: 503,818.

    Args:
        num_classes: number of classes.
        point_dim: coordinates per point.
        hidden_dim: width of every block (128).
        num_heads: attention heads (4; head size ``hidden_dim // num_heads``).
        num_inducing_points: inducing points of each ISAB (16).
        num_isab: number of ISAB blocks (2).
        ff_dim: hidden width of each block's feed-forward layer.
        num_seeds: PMA seed vectors (1); their outputs are concatenated.
        dropout: rate of the two dropout layers (before and after the PMA).
        pma_rff: apply a row-wise Dense before the PMA (the paper's
            ``PMA(Z) = MAB(S, rFF(Z))``; the reference code has none).
        norm_first: pre-LN blocks (True) or the paper's post-LN MAB.
        epsilon: LayerNormalization epsilon (1e-5, PyTorch's default).
        seed: seed of the dropout layers.
        **kwargs: `keras.Model` arguments (``name``, ``dtype``...).

    Example (tiny widths, to run fast):
    >>> from ddeq_keras.models import SetTransformerClassifier
    >>> model = SetTransformerClassifier(num_classes=40, point_dim=3, hidden_dim=8,
    ...                                  num_heads=2, num_inducing_points=4, ff_dim=16)
    >>> model.compile()  # Adam(1e-3), sparse CE from logits, accuracy
    >>> batch = {"points": np.random.randn(2, 30, 3).astype("float32"),
    ...          "mask": np.arange(30)[None] < np.array([[30], [12]])}
    >>> logits = ops.convert_to_numpy(model(batch))
    >>> logits.shape
    (2, 40)
    >>> unpadded = {"points": batch["points"][1:, :12], "mask": np.ones((1, 12), bool)}
    >>> np.allclose(logits[1], ops.convert_to_numpy(model(unpadded))[0], atol=1e-5)
    True
    """

    config_fields = (
        "num_classes",
        "point_dim",
        "hidden_dim",
        "num_heads",
        "num_inducing_points",
        "num_isab",
        "ff_dim",
        "num_seeds",
        "dropout",
        "pma_rff",
        "norm_first",
        "epsilon",
        "seed",
    )

    def __init__(
        self,
        num_classes,
        point_dim=3,
        hidden_dim=128,
        num_heads=4,
        num_inducing_points=16,
        num_isab=2,
        ff_dim=128,
        num_seeds=1,
        dropout=0.5,
        pma_rff=False,
        norm_first=True,
        epsilon=1e-5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.point_dim = int(point_dim)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` "
                f"({num_heads})."
            )
        self.num_inducing_points = int(num_inducing_points)
        self.num_isab = int(num_isab)
        self.ff_dim = int(ff_dim)
        self.num_seeds = int(num_seeds)
        self.dropout = dropout_rate(dropout, "dropout")
        self.pma_rff = bool(pma_rff)
        self.norm_first = bool(norm_first)
        self.epsilon = float(epsilon)
        self.seed = seed
        dtype = self.dtype_policy
        block = dict(
            num_heads=self.num_heads,
            ff_dim=self.ff_dim,
            dropout=0.0,
            norm_first=self.norm_first,
            epsilon=self.epsilon,
            dtype=dtype,
        )
        self.embedding = keras.layers.Dense(self.hidden_dim, dtype=dtype, name="embedding")
        self.isabs = [
            ISAB(num_inducing_points=self.num_inducing_points, name=f"isab{i}", **block)
            for i in range(self.num_isab)
        ]
        self.pre_pool_dropout = keras.layers.Dropout(
            self.dropout, seed=seed, dtype=dtype, name="pre_pool_dropout"
        )
        self.pma = PMA(num_seeds=self.num_seeds, use_rff=self.pma_rff, name="pma", **block)
        self.post_pool_dropout = keras.layers.Dropout(
            self.dropout,
            seed=None if seed is None else int(seed) + 1,
            dtype=dtype,
            name="post_pool_dropout",
        )
        self.classifier = keras.layers.Dense(self.num_classes, dtype=dtype, name="logits")

    def build(self, inputs_shape):
        shape = _base.points_shape(inputs_shape, self.point_dim)
        self.embedding.build(shape)
        shape = shape[:-1] + (self.hidden_dim,)
        for isab in self.isabs:
            isab.build(shape)
        self.pma.build(shape)
        self.classifier.build((shape[0], self.num_seeds * self.hidden_dim))

    def call(self, inputs, training=None):
        points, mask = _base.prepare_cloud(inputs, self.point_dim)
        x = self.embedding(points)
        for isab in self.isabs:
            x = isab(x, mask=mask, training=training)
        x = self.pre_pool_dropout(x, training=training)
        y = self.pma(x, mask=mask, training=training)  # (batch, num_seeds, dim)
        y = ops.reshape(y, (-1, self.num_seeds * self.hidden_dim))
        y = self.post_pool_dropout(y, training=training)
        return self.classifier(y)
