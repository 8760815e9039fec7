"""`DDEQNetwork`: the map f_theta(Q, P) of a DDEQ (method note, section 5)."""

import keras
from keras import ops

from ddeq_keras.layers import (
    CrossAttentionBlock,
    EquivariantBilinear,
    FeedForward,
    PointwiseMLP,
    SelfAttentionBlock,
)


RESIDUALS = ("iterate", "initial")


def _ln(epsilon, name, dtype):
    return keras.layers.LayerNormalization(epsilon=epsilon, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="ddeq_keras")
class DDEQNetwork(keras.layers.Layer):
    """f_theta: maps particles ``z`` to particles, conditioned on a point cloud ``x``.

    Equivariant in the particles, invariant in the points. The layout follows the
    authors' configuration (section 5 of the method note)::

        z = LN(MLP_z(z))                 x = LN(MLP_x(x))          (-> bilinear_dim)
        z = LN(z + Bilinear(z, sum_j x_j))
        z = LN(MLP(z))                   x = LN(MLP(x))            (-> latent_dim)
        z = LN(z + z_in)                 (z_in: see ``residual``)
        z = SelfAttn(z)                  x = SelfAttn(x)
        z = CrossAttn(z, x)  x num_cross_blocks
        out = LN(z + FF(z))

    Everything on the right depends only on ``x``: `compute_context` computes it
    once per forward pass (with the masked sum for the bilinear layer and the
    key/value projections of every cross-attention block), and `call` does only
    the particle work, so a 200-step flow does the x-work once instead of 200
    times. Dropout masks of the particle-side feed-forward layers are drawn in
    `compute_context` too and kept for the whole solve: the fixed-point problem
    stays well defined and `call` consumes no random state.

    Memory: the self-attention over the points (``x = SelfAttn(x)``) of long
    clouds (1,024 ModelNet points) and any other attention with more than
    `ddeq_keras.ops.attention.FULL_SCORES_MAX_ELEMENTS` scores per sample
    never materialise their ``(batch, heads, n, m)`` scores (see
    `MaskedMultiHeadAttention`), so a batch of 64 clouds of 1,024 points
    trains within a few GB; smaller attention (the 10-particle attention of
    a classifier's flow step, the 351-point encoder of the MNIST classifier)
    stays on the plain (faster) path, except on JAX and PyTorch, where the
    351-point attention is faster on the memory-efficient path too
    (`ddeq_keras.backend.attention_policy`).
    The map's own attention (and all of a completer's, whose particles are as
    many as its points) takes the memory-efficient path from a lower size
    (`tight_memory`, see `ddeq_keras.ops.attention`).

    Args:
        latent_dim: particle width ``d_z`` (128).
        hidden_dim: width of the first MLPs (h1 = 16).
        bilinear_dim: units of the bilinear layer (h3 = 16).
        num_heads: attention heads (32, head size 4).
        ff_dim: feed-forward width (512).
        num_cross_blocks: cross-attention blocks (1 for MNIST classification, 3
            otherwise).
        dropout: feed-forward dropout rate (0.1).
        epsilon: LayerNormalization epsilon (1e-5, PyTorch's default).
        norm_first: pre-LN attention blocks instead of the authors' post-LN.
        precompute_context: do the x-only work once per forward pass (default).
            ``False`` redoes it at every call, as the authors' code does; the
            outputs are the same (a reference mode for benchmarks).
        residual: what the residual ``z = LN(z + z_in)`` adds back.
            ``"iterate"`` (the authors'): the particles the map is called on.
            ``"initial"``: the solve's starting particles ``z0`` (input
            injection, as in DEQs), passed as ``context["initial"]``. With
            ``"iterate"`` particles that coincide map to coincident particles,
            so a map that contracts has one fixed point, every particle at the
            same place (what the README calls a collapsed equilibrium); with
            ``"initial"`` each particle keeps its own start in the map, so the
            equilibrium can stay spread (what a completer needs).
        seed: seed of the dropout masks.
        **kwargs: base layer arguments.

    Example (tiny widths, to run fast):
    >>> from ddeq_keras.models import DDEQNetwork
    >>> f = DDEQNetwork(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2,
    ...                 ff_dim=16, num_cross_blocks=1)
    >>> x, x_mask = keras.random.normal((2, 50, 2)), ops.ones((2, 50), "bool")
    >>> z = keras.random.normal((2, 10, 16))
    >>> f.build_for(z.shape, x.shape)
    >>> context = f.compute_context(x, x_mask)     # once per forward pass
    >>> z_next = ops.convert_to_numpy(f(z, context))  # every flow step
    >>> z_next.shape
    (2, 10, 16)
    >>> reversed_next = ops.convert_to_numpy(f(z[:, ::-1], context))  # equivariant
    >>> np.allclose(reversed_next, z_next[:, ::-1], atol=1e-5)
    True
    """

    def __init__(
        self,
        latent_dim=128,
        hidden_dim=16,
        bilinear_dim=16,
        num_heads=32,
        ff_dim=512,
        num_cross_blocks=1,
        dropout=0.1,
        epsilon=1e-5,
        norm_first=False,
        precompute_context=True,
        residual="iterate",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if residual not in RESIDUALS:
            raise ValueError(f"`residual` must be one of {RESIDUALS}; got residual={residual!r}.")
        self.residual = residual
        self.precompute_context = precompute_context
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.bilinear_dim = bilinear_dim
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.num_cross_blocks = num_cross_blocks
        self.dropout = dropout
        self.epsilon = epsilon
        self.norm_first = norm_first
        self.seed = seed
        dt = self.dtype_policy
        block = dict(num_heads=num_heads, ff_dim=ff_dim, dropout=dropout, epsilon=epsilon,
                     norm_first=norm_first, dtype=dt)
        offsets = iter(range(1, 100))

        def draw():  # distinct, reproducible dropout seeds per block
            return None if seed is None else seed + next(offsets)

        # Particle side.
        self.z_mlp1 = PointwiseMLP(hidden_dim, hidden_dim, name="z_mlp1", dtype=dt)
        self.z_norm1 = _ln(epsilon, "z_norm1", dt)
        self.bilinear = EquivariantBilinear(bilinear_dim, epsilon=epsilon, name="bilinear", dtype=dt)
        self.z_norm_bilinear = _ln(epsilon, "z_norm_bilinear", dt)
        self.z_mlp2 = PointwiseMLP(latent_dim, latent_dim, name="z_mlp2", dtype=dt)
        self.z_norm2 = _ln(epsilon, "z_norm2", dt)
        self.z_norm_residual = _ln(epsilon, "z_norm_residual", dt)
        self.z_self_attention = SelfAttentionBlock(name="z_self_attention", seed=draw(), **block)
        self.cross_attention = [
            CrossAttentionBlock(name=f"cross_attention_{i}", seed=draw(), **block)
            for i in range(num_cross_blocks)
        ]
        # Attention inside the map: differentiated at every backward pass, so it
        # leaves the plain path at a lower size (the completer's 351 particles).
        for flow_block in (self.z_self_attention, *self.cross_attention):
            flow_block.attention.tight_memory = True
        self.output_feedforward = FeedForward(ff_dim, rate=dropout, name="output_feedforward",
                                              seed=draw(), dtype=dt)
        self.output_norm = _ln(epsilon, "output_norm", dt)
        # Point side (computed once per forward pass).
        self.x_mlp1 = PointwiseMLP(hidden_dim, hidden_dim, name="x_mlp1", dtype=dt)
        self.x_norm1 = _ln(epsilon, "x_norm1", dt)
        self.x_mlp2 = PointwiseMLP(latent_dim, latent_dim, name="x_mlp2", dtype=dt)
        self.x_norm2 = _ln(epsilon, "x_norm2", dt)
        self.x_self_attention = SelfAttentionBlock(name="x_self_attention", seed=draw(), **block)

    def build_for(self, z_shape, x_shape):
        """Creates every weight for particles ``z_shape`` and points ``x_shape``.

        Variable paths are ``.../network/<sub-layer>/...`` (stable keys of
        published weights), as if Keras had called `build`.
        """
        with keras.name_scope(self.name, caller=self):
            self._build_for(tuple(z_shape), tuple(x_shape))

    def _build_for(self, z_shape, x_shape):
        small_z = z_shape[:-1] + (self.hidden_dim,)
        small_x = x_shape[:-1] + (self.hidden_dim,)
        big_z = z_shape[:-1] + (self.latent_dim,)
        big_x = x_shape[:-1] + (self.latent_dim,)
        self.z_mlp1.build(z_shape)
        self.z_norm1.build(small_z)
        self.bilinear.build(small_z, s_shape=(x_shape[0], self.hidden_dim))
        self.z_norm_bilinear.build(small_z)
        self.z_mlp2.build(small_z)
        self.z_norm2.build(big_z)
        self.z_norm_residual.build(big_z)
        self.z_self_attention.build(big_z)
        for block in self.cross_attention:
            block.build(big_z, big_x)
        self.output_feedforward.build(big_z)
        self.output_norm.build(big_z)
        self.x_mlp1.build(x_shape)
        self.x_norm1.build(small_x)
        self.x_mlp2.build(small_x)
        self.x_norm2.build(big_x)
        self.x_self_attention.build(big_x)
        self.point_dim = x_shape[-1]
        self.built = True

    def build(self, z_shape, context_shape=None):
        if not self.built:
            raise ValueError(
                f"{self.name}: call `build_for(z_shape, x_shape)` (or `compute_context`) "
                "before calling the network on particles."
            )

    def compute_context(self, x, x_mask=None, batch_size=None, training=None):
        """Everything that depends only on the points, once per forward pass.

        Args:
            x: points ``(batch, m, point_dim)``.
            x_mask: boolean ``(batch, m)`` or None.
            batch_size: batch size for the dropout masks (default: from ``x``).
            training: draws dropout masks when truthy.

        Returns:
            dict passed as ``context`` to every call of the network.
        """
        if not self.built:
            raise ValueError(f"{self.name}: call `build_for` first.")
        batch = batch_size if batch_size is not None else ops.shape(x)[0]
        blocks = [self.x_self_attention, self.z_self_attention, *self.cross_attention]
        keep = [b.sample_dropout_mask(batch, training=training) for b in blocks]
        keep.append(self.output_feedforward.sample_dropout_mask(batch, training=training))
        if self.precompute_context:
            return {**self._point_features(x, x_mask, keep[0]), "dropout": keep[1:]}
        return {"points": x, "mask": x_mask, "dropout": keep}

    def _point_features(self, x, x_mask, keep):
        h = self.x_norm1(self.x_mlp1(x, mask=x_mask))
        s = self.bilinear.compute_context(h, x_mask)
        h = self.x_norm2(self.x_mlp2(h, mask=x_mask))
        h = self.x_self_attention(h, mask=x_mask, dropout_mask=keep)
        return {"sum": s, "cross": [b.compute_context(h, x_mask) for b in self.cross_attention]}

    def call(self, z, context, mask=None):
        keep = context["dropout"]
        if not self.precompute_context:  # the reference mode: x-work at every step
            context = self._point_features(context["points"], context["mask"], keep[0])
            keep = keep[1:]
        if self.residual == "initial":
            if "initial" not in context:
                raise ValueError(
                    f"{self.name} has residual='initial': pass the starting particles as "
                    "context['initial'] (DDEQBackbone does)."
                )
            z_in = context["initial"]
        else:
            z_in = z
        h = self.z_norm1(self.z_mlp1(z, mask=mask))
        h = self.z_norm_bilinear(h + self.bilinear(h, s=context["sum"], mask=mask))
        h = self.z_norm2(self.z_mlp2(h, mask=mask))
        h = self.z_norm_residual(h + z_in)
        h = self.z_self_attention(h, mask=mask, dropout_mask=keep[0])
        for block, ctx, dm in zip(self.cross_attention, context["cross"], keep[1:-1]):
            h = block(h, context=ctx, dropout_mask=dm)
        return self.output_norm(h + self.output_feedforward(h, dropout_mask=keep[-1]))

    def compute_output_shape(self, z_shape, context_shape=None):
        return tuple(z_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "latent_dim": self.latent_dim,
                "hidden_dim": self.hidden_dim,
                "bilinear_dim": self.bilinear_dim,
                "num_heads": self.num_heads,
                "ff_dim": self.ff_dim,
                "num_cross_blocks": self.num_cross_blocks,
                "dropout": self.dropout,
                "epsilon": self.epsilon,
                "norm_first": self.norm_first,
                "precompute_context": self.precompute_context,
                "residual": self.residual,
                "seed": self.seed,
            }
        )
        return config
