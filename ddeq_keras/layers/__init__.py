"""Keras layers for DDEQs."""

from ddeq_keras.layers.gradient_flow_equilibrium import GradientFlowEquilibrium
from ddeq_keras.layers.attention import (
    MaskedMultiHeadAttention,
    attention_mask_from_key_mask,
)
from ddeq_keras.layers.attention_blocks import CrossAttentionBlock, SelfAttentionBlock
from ddeq_keras.layers.bilinear import EquivariantBilinear
from ddeq_keras.layers.coupling import AffineCouplingEmbedding
from ddeq_keras.layers.feedforward import FeedForward
from ddeq_keras.layers.pointwise import PointwiseMLP
from ddeq_keras.layers.pooling import MaskedMaxPooling, MaskedMeanPooling
from ddeq_keras.layers.set_transformer import ISAB, PMA

__all__ = [
    "AffineCouplingEmbedding",
    "CrossAttentionBlock",
    "EquivariantBilinear",
    "FeedForward",
    "GradientFlowEquilibrium",
    "ISAB",
    "MaskedMaxPooling",
    "MaskedMeanPooling",
    "MaskedMultiHeadAttention",
    "PMA",
    "PointwiseMLP",
    "SelfAttentionBlock",
    "attention_mask_from_key_mask",
]
