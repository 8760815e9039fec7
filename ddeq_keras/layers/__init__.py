"""Keras layers for DDEQs."""

from ddeq_keras.layers.gradient_flow_equilibrium import GradientFlowEquilibrium  # noqa: F401
from ddeq_keras.layers.attention import (  # noqa: F401
    ISAB,
    PMA,
    CrossAttentionBlock,
    MaskedMultiHeadAttention,
    SelfAttentionBlock,
    attention_mask_from_key_mask,
)
from ddeq_keras.layers.bilinear import EquivariantBilinear  # noqa: F401
from ddeq_keras.layers.coupling import AffineCouplingEmbedding  # noqa: F401
from ddeq_keras.layers.feedforward import FeedForward  # noqa: F401
from ddeq_keras.layers.pointwise import PointwiseMLP  # noqa: F401
from ddeq_keras.layers.pooling import MaskedMaxPooling, MaskedMeanPooling  # noqa: F401
