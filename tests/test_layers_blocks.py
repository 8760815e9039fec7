"""Tests of the DDEQ building-block layers (attention blocks, feed-forward,
point-wise MLP, pooling, bilinear layer, coupling embedding).

Runs on the backend named by ``KERAS_BACKEND``.

Tolerances: float32 throughout. Where two computations differ only in the
order of float32 sums (a permutation, a different padding length), results
agree to a few ulps of O(1) values, so ``atol=1e-5`` is used (about 100x the
float32 epsilon, well below any real masking or equivariance error, which
would be O(0.1)). Where the code path is the same sequence of operations
(precomputed context vs plain call, reused dropout mask, config round trip),
equality is exact.
"""

import inspect

import keras
import numpy as np
import pytest
from keras import ops

from conftest import BACKEND, to_numpy
from ddeq_keras.layers import (
    ISAB,
    PMA,
    AffineCouplingEmbedding,
    CrossAttentionBlock,
    EquivariantBilinear,
    FeedForward,
    MaskedMaxPooling,
    MaskedMeanPooling,
    MaskedMultiHeadAttention,
    PointwiseMLP,
    SelfAttentionBlock,
    attention_mask_from_key_mask,
)

ATOL = 1e-5  # float32 reordering of O(1) sums; see the module docstring.

# Small widths keep the tests fast; the DDEQ widths are checked in the
# parameter-count tests only.
D, HEADS, FF = 16, 4, 32


def _normal(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def _mask(lengths, n):
    return np.arange(n)[None, :] < np.asarray(lengths)[:, None]


def _garbage_padding(x, mask, rng, value=1e3):
    """Replaces padded rows of ``x`` by large random values."""
    x = x.copy()
    x[~mask] = value * _normal(rng, int((~mask).sum()), x.shape[-1])
    return x


def _pad_more(x, mask, extra, rng):
    """Appends ``extra`` padded rows of garbage."""
    b, _, d = x.shape
    x = np.concatenate([x, 1e3 * _normal(rng, b, extra, d)], axis=1)
    mask = np.concatenate([mask, np.zeros((b, extra), bool)], axis=1)
    return x, mask


def _close(a, b, atol=ATOL):
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=atol, rtol=0)


def _equal(a, b):
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def _block(cls, **kwargs):
    kwargs.setdefault("num_heads", HEADS)
    kwargs.setdefault("ff_dim", FF)
    return cls(**kwargs)


# ---------------------------------------------------------------- attention


def test_mha_matches_keras_multi_head_attention(rng):
    # Same weight layout as keras.layers.MultiHeadAttention: copying the
    # weights must give the same outputs (no mask: Keras' masking differs).
    q, v = _normal(rng, 2, 5, D), _normal(rng, 2, 7, D)
    ref = keras.layers.MultiHeadAttention(num_heads=HEADS, key_dim=D // HEADS)
    expected = ref(q, v)
    mha = MaskedMultiHeadAttention(num_heads=HEADS)
    mha(q, v)
    assert mha.count_params() == ref.count_params()
    mha.set_weights(ref.get_weights())
    _close(mha(q, v), expected)


def test_mha_padded_keys_get_zero_weight(rng):
    q, v = _normal(rng, 2, 5, D), _normal(rng, 2, 7, D)
    mask = _mask([7, 3], 7)
    mha = MaskedMultiHeadAttention(num_heads=HEADS)
    _, weights = mha(q, v, key_mask=mask, return_attention_scores=True)
    weights = to_numpy(weights)
    assert weights.shape == (2, HEADS, 5, 7)
    assert np.all(weights[1, :, :, 3:] == 0.0)  # the lowest float32 logit gets weight 0
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    # An explicit (batch, n_q, n_k) attention mask is the same thing.
    att = attention_mask_from_key_mask(mask, 5)
    assert tuple(att.shape) == (2, 5, 7)
    _equal(mha(q, v, attention_mask=att), mha(q, v, key_mask=mask))


@pytest.mark.parametrize("norm_first", [False, True])
def test_self_attention_key_mask_applied(rng, norm_first):
    block = _block(SelfAttentionBlock, norm_first=norm_first, dropout=0.0)
    x = _normal(rng, 2, 7, D)
    mask = _mask([7, 3], 7)
    y = to_numpy(block(x, mask=mask))
    assert np.all(np.isfinite(y))  # padded query rows too
    # Garbage in the padded rows does not change the valid rows.
    y_garbage = to_numpy(block(_garbage_padding(x, mask, rng), mask=mask))
    _close(y_garbage[mask], y[mask])
    # Neither does the amount of padding.
    x_long, mask_long = _pad_more(x, mask, 3, rng)
    y_long = to_numpy(block(x_long, mask=mask_long))
    _close(y_long[mask_long], y[mask])
    # Sanity: without the mask the padding does leak (the test can fail).
    y_nomask = to_numpy(block(_garbage_padding(x, mask, rng)))
    assert np.abs(y_nomask[1, :3] - y[1, :3]).max() > 1e-2


@pytest.mark.parametrize("norm_first", [False, True])
def test_cross_attention_key_mask_applied(rng, norm_first):
    block = _block(CrossAttentionBlock, norm_first=norm_first, dropout=0.0)
    z, x = _normal(rng, 2, 5, D), _normal(rng, 2, 7, D)
    x_mask = _mask([7, 3], 7)
    y = to_numpy(block(z, x, x_mask=x_mask))
    # Even NaN in padded context rows: valid keys only, values zeroed.
    x_nan = x.copy()
    x_nan[~x_mask] = np.nan
    y_nan = to_numpy(block(z, x_nan, x_mask=x_mask))
    assert np.all(np.isfinite(y_nan))
    _close(y_nan, y)
    x_long, mask_long = _pad_more(x, x_mask, 3, rng)
    _close(block(z, x_long, x_mask=mask_long), y)
    # A set with no valid context point still gives finite outputs.
    empty = to_numpy(block(z, x, x_mask=np.zeros((2, 7), bool)))
    assert np.all(np.isfinite(empty))


def test_self_attention_permutation_equivariant(rng):
    block = _block(SelfAttentionBlock, dropout=0.0)
    x = _normal(rng, 2, 7, D)
    mask = _mask([7, 5], 7)
    perm = rng.permutation(7)
    y = to_numpy(block(x, mask=mask))
    y_perm = to_numpy(block(x[:, perm], mask=mask[:, perm]))
    valid = mask[:, perm]
    _close(y_perm[valid], y[:, perm][valid])


def test_cross_attention_equivariant_in_z_invariant_in_x(rng):
    block = _block(CrossAttentionBlock, dropout=0.0)
    z, x = _normal(rng, 2, 5, D), _normal(rng, 2, 7, D)
    x_mask = _mask([7, 3], 7)
    y = to_numpy(block(z, x, x_mask=x_mask))
    pz, px = rng.permutation(5), rng.permutation(7)
    y_perm = block(z[:, pz], x[:, px], x_mask=x_mask[:, px])
    _close(y_perm, y[:, pz])


@pytest.mark.parametrize("norm_first", [False, True])
def test_cross_attention_precomputed_context_is_exact(rng, norm_first):
    block = _block(CrossAttentionBlock, norm_first=norm_first, dropout=0.5)
    z, x = _normal(rng, 2, 5, D), _normal(rng, 2, 7, D)
    x_mask = _mask([7, 3], 7)
    keep = block.sample_dropout_mask(2, training=True)
    y = block(z, x, x_mask=x_mask, dropout_mask=keep)
    context = block.compute_context(x, x_mask)
    assert set(context) == {"key", "value", "mask", "bias"}
    # Head-major layouts (batch, heads, dim, keys) and (batch, heads, keys, dim).
    assert tuple(context["key"].shape) == (2, HEADS, D // HEADS, 7)
    assert tuple(context["value"].shape) == (2, HEADS, 7, D // HEADS)
    # Same operations in the same order: bit-identical.
    _equal(block(z, context=context, dropout_mask=keep), y)
    # The mask may also be passed beside a context built without it.
    context_nomask = block.compute_context(x)
    y_again = block(z, context=context_nomask, x_mask=x_mask, dropout_mask=keep)
    _close(y_again, y)  # padded values are not zeroed here: close, not equal


def test_cross_attention_needs_x_or_context(rng):
    block = _block(CrossAttentionBlock)
    with pytest.raises(ValueError):
        block.build((2, 6, D))
    with pytest.raises(ValueError):
        block.compute_context(_normal(rng, 2, 7, D))  # not built yet


# ------------------------------------------------------------- feed-forward


def test_dropout_mask_reused_and_no_random_state_consumed(rng):
    ff = FeedForward(hidden_units=FF, rate=0.5, seed=1)
    z = _normal(rng, 2, 5, D)
    ff(z)
    keep = ff.sample_dropout_mask(2, training=True)
    state = to_numpy(ff.seed_generator.state).copy()
    y1 = ff(z, dropout_mask=keep, training=True)
    y2 = ff(z, dropout_mask=keep, training=True)
    _equal(y1, y2)
    _equal(ff.seed_generator.state, state)  # nothing drawn inside the calls
    # Without a mask, training draws a fresh one per call (ordinary dropout).
    y3, y4 = ff(z, training=True), ff(z, training=True)
    assert np.abs(to_numpy(y3) - to_numpy(y4)).max() > 1e-3
    assert np.any(to_numpy(ff.seed_generator.state) != state)


def test_dropout_mask_values_shape_and_sharing(rng):
    ff = FeedForward(hidden_units=FF, rate=0.25, seed=2)
    keep = to_numpy(ff.sample_dropout_mask(2, training=True))
    assert keep.shape == (2, 1, FF)  # one mask per set
    assert set(np.unique(keep)) <= {0.0, np.float32(1 / 0.75)}
    assert 0 < (keep == 0).sum() < keep.size
    # All particles of a set share the mask: identical particles stay
    # identical under dropout (an internally drawn mask, training=True).
    row = _normal(rng, 2, 1, D)
    z = np.repeat(row, 5, axis=1)
    y = to_numpy(ff(z, training=True))
    # (ATOL: BLAS may round rows of one matmul differently; a per-particle
    # mask would instead zero different units, an O(0.1) difference.)
    _close(y, np.repeat(y[:, :1], 5, axis=1))
    # (and dropout did act: the output differs from the deterministic one)
    assert np.abs(y - to_numpy(ff(z, training=False))).max() > 1e-3
    # A boolean keep-mask is scaled by 1 / (1 - rate): same as the float one.
    _close(
        ff(z, dropout_mask=ops.convert_to_tensor(keep > 0)),
        ff(z, dropout_mask=keep),
        atol=1e-6,  # x * (1/(1-p)) inside vs a pre-scaled mask: 1 ulp
    )


def test_dropout_off_when_not_training_or_rate_zero(rng):
    ff = FeedForward(hidden_units=FF, rate=0.5)
    z = _normal(rng, 2, 5, D)
    assert ff.sample_dropout_mask(2, training=False) is None
    y = to_numpy(ff(z, training=False))
    w1, b1, w2, b2 = ff.get_weights()
    expected = np.maximum(z @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(y, expected, atol=ATOL)
    # rate 0: training=True is the same as no dropout.
    ff0 = FeedForward(hidden_units=FF, rate=0.0)
    ff0(z)
    ff0.set_weights(ff.get_weights())
    assert ff0.sample_dropout_mask(2, training=True) is None
    _equal(ff0(z, training=True), ff0(z, training=False))
    _equal(ff0(z, training=False), ff(z, training=False))


def test_block_dropout_mask_fixed_across_calls(rng):
    block = _block(SelfAttentionBlock, dropout=0.3, seed=3)
    x = _normal(rng, 2, 7, D)
    block(x)
    keep = block.sample_dropout_mask(2, training=True)
    assert tuple(keep.shape) == (2, 1, FF)
    y_keep = to_numpy(block(x, dropout_mask=keep))
    _equal(block(x, dropout_mask=keep), y_keep)
    assert np.abs(y_keep - to_numpy(block(x, training=False))).max() > 1e-3
    assert block.sample_dropout_mask(2, training=False) is None
    # training=False and no mask: deterministic.
    _equal(block(x, training=False), block(x, training=False))


@pytest.mark.skipif(BACKEND != "jax", reason="JAX tracing check")
def test_jax_dropout_mask_inside_grad_and_loop(rng):
    # The flow calls f inside jax.grad inside a loop under jit: with the mask
    # drawn outside, no random state is touched and nothing leaks.
    import jax

    block = _block(CrossAttentionBlock, dropout=0.5, seed=4)
    z, x = _normal(rng, 2, 5, D), _normal(rng, 2, 7, D)
    x_mask = _mask([7, 3], 7)
    block(z, x, x_mask=x_mask)
    context = block.compute_context(x, x_mask)
    keep = block.sample_dropout_mask(2, training=True)
    state = to_numpy(block.feedforward.seed_generator.state).copy()

    def energy(z):
        return jax.numpy.sum(block(z, context=context, dropout_mask=keep) ** 2)

    def step(i, z):
        return z - 1e-3 * jax.grad(energy)(z)

    out = jax.jit(lambda z: jax.lax.fori_loop(0, 3, step, z))(z)
    assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_array_equal(to_numpy(block.feedforward.seed_generator.state), state)


# ---------------------------------------------------- bilinear, MLP, pooling


def test_bilinear_matches_formula_and_precomputed_sum(rng):
    layer = EquivariantBilinear(units=8, epsilon=1e-5)
    z, x = _normal(rng, 2, 5, D), _normal(rng, 2, 7, 2)
    x_mask = _mask([7, 3], 7)
    y = to_numpy(layer(z, x=x, x_mask=x_mask))
    alpha, bias = to_numpy(layer.alpha), to_numpy(layer.bias)
    assert alpha.shape == (D, 8, 2)
    s = (x * x_mask[..., None]).sum(1)  # masked SUM, not mean
    pre = np.einsum("bnp,phd,bd->bnh", z, alpha, s) + bias
    mu, var = pre.mean(-1, keepdims=True), pre.var(-1, keepdims=True)
    expected = np.maximum((pre - mu) / np.sqrt(var + 1e-5), 0)  # LN weights 1/0
    np.testing.assert_allclose(y, expected, atol=1e-4)  # LN of O(10) values
    s_pre = layer.compute_context(x, x_mask)
    _close(s_pre, s)
    _equal(layer(z, s=s_pre), y)  # same operations: exact
    # Padded points are replaced by zeros before the sum: exact.
    _equal(layer(z, x=_garbage_padding(x, x_mask, rng), x_mask=x_mask), y)


def test_bilinear_permutation_equivariant_in_z_invariant_in_x(rng):
    layer = EquivariantBilinear(units=16)
    z, x = _normal(rng, 2, 5, 16), _normal(rng, 2, 7, 16)
    x_mask = _mask([7, 3], 7)
    y = to_numpy(layer(z, x=x, x_mask=x_mask))
    pz, px = rng.permutation(5), rng.permutation(7)
    y_perm = layer(z[:, pz], x=x[:, px], x_mask=x_mask[:, px])
    _close(y_perm, y[:, pz], atol=1e-4)  # pre-LN values O(100): 1e-4 abs
    # z-mask zeroes padded particles.
    z_mask = _mask([5, 2], 5)
    y_masked = to_numpy(layer(z, x=x, x_mask=x_mask, mask=z_mask))
    assert np.all(y_masked[~z_mask] == 0)
    _close(y_masked[z_mask], y[z_mask])


def test_pointwise_mlp_masked_and_equivariant(rng):
    mlp = PointwiseMLP(FF, 8)
    z = _normal(rng, 2, 5, D)
    mask = _mask([5, 2], 5)
    y = to_numpy(mlp(z, mask=mask))
    assert y.shape == (2, 5, 8)
    assert np.all(y[~mask] == 0)
    w1, b1, w2, b2 = mlp.get_weights()
    expected = np.maximum(z @ w1 + b1, 0) @ w2 + b2
    _close(y[mask], expected[mask])
    perm = rng.permutation(5)
    _close(mlp(z[:, perm]), to_numpy(mlp(z))[:, perm])
    assert mlp.compute_output_shape((None, 5, D)) == (None, 5, 8)


def test_masked_pooling(rng):
    z = _normal(rng, 2, 5, D)
    mask = _mask([5, 2], 5)
    z_garbage = _garbage_padding(z, mask, rng, value=1e6)
    mx, mean = MaskedMaxPooling(), MaskedMeanPooling(keepdims=True)
    y_max, y_mean = to_numpy(mx(z_garbage, mask=mask)), to_numpy(mean(z_garbage, mask=mask))
    _close(y_max[1], z[1, :2].max(0))
    _close(y_mean[1, 0], z[1, :2].mean(0))
    assert y_max.shape == (2, D) and y_mean.shape == (2, 1, D)
    assert mx.compute_output_shape((None, 5, D)) == (None, D)
    assert mean.compute_output_shape((None, 5, D)) == (None, 1, D)
    perm = rng.permutation(5)
    _close(mx(z[:, perm], mask=mask[:, perm]), y_max)


# --------------------------------------------------------- coupling layer


def test_coupling_embedding(rng):
    emb = AffineCouplingEmbedding(latent_dim=16)
    pts = _normal(rng, 2, 5, 2)
    z = emb(pts)
    assert tuple(z.shape) == (2, 5, 16)
    _equal(emb.project(z), pts)  # the points sit in the untouched half
    # Second half = t(first half) (the padded zeros times exp(s) vanish).
    z = to_numpy(z)
    assert np.all(z[..., 2:8] == 0)
    assert np.abs(z[..., 8:]).max() > 0
    # inverse(couple(u)) == u for general latents.
    u = _normal(rng, 2, 5, 16)
    _close(emb.inverse(emb.couple(u)), u, atol=1e-4)  # exp(s)*exp(-s) roundoff
    mask = _mask([5, 2], 5)
    assert np.all(to_numpy(emb(pts, mask=mask))[~mask] == 0)
    with pytest.raises(ValueError):
        AffineCouplingEmbedding(latent_dim=4)(_normal(rng, 1, 3, 3))


# --------------------------------------------------------------- ISAB, PMA


def test_isab_shapes_masking_equivariance(rng):
    isab = ISAB(num_inducing_points=4, num_heads=HEADS, ff_dim=FF)
    x = _normal(rng, 2, 7, D)
    mask = _mask([7, 3], 7)
    y = to_numpy(isab(x, mask=mask))
    assert y.shape == (2, 7, D) and np.all(np.isfinite(y))
    y_garbage = to_numpy(isab(_garbage_padding(x, mask, rng), mask=mask))
    _close(y_garbage[mask], y[mask])
    x_long, mask_long = _pad_more(x, mask, 3, rng)
    _close(to_numpy(isab(x_long, mask=mask_long))[mask_long], y[mask])
    perm = rng.permutation(7)
    y_perm = to_numpy(isab(x[:, perm], mask=mask[:, perm]))
    valid = mask[:, perm]
    _close(y_perm[valid], y[:, perm][valid])


@pytest.mark.parametrize("use_rff", [True, False])
def test_pma_shapes_masking_invariance(rng, use_rff):
    pma = PMA(num_seeds=3, use_rff=use_rff, num_heads=HEADS, ff_dim=FF)
    x = _normal(rng, 2, 7, D)
    mask = _mask([7, 3], 7)
    y = to_numpy(pma(x, mask=mask))
    assert y.shape == (2, 3, D)
    assert pma.compute_output_shape((None, 7, D)) == (None, 3, D)
    _close(pma(_garbage_padding(x, mask, rng), mask=mask), y)
    x_long, mask_long = _pad_more(x, mask, 3, rng)
    _close(pma(x_long, mask=mask_long), y)
    perm = rng.permutation(7)
    _close(pma(x[:, perm], mask=mask[:, perm]), y)


# -------------------------------------------------------- parameter counts


# Counting does not depend on the initial values; zeros are cheap to make.
ZEROS = dict(kernel_initializer="zeros")


def _count(layer, *shapes, **kw_shapes):
    # build() only (no forward pass): fast on every backend.
    layer.build(*shapes, **kw_shapes)
    return layer.count_params()


def test_parameter_counts_ddeq_widths():
    z, x = (1, 3, 128), (1, 4, 128)
    mha = MaskedMultiHeadAttention(num_heads=32, key_dim=4, **ZEROS)
    assert _count(mha, z, x) == 66_048
    assert _count(FeedForward(512, **ZEROS), z) == 131_712
    for norm_first in (False, True):
        assert _count(SelfAttentionBlock(norm_first=norm_first, **ZEROS), x) == 198_272
        assert _count(CrossAttentionBlock(norm_first=norm_first, **ZEROS), z, x) == 198_272
    z16 = (1, 3, 16)
    assert _count(EquivariantBilinear(16, alpha_initializer="zeros"), z16, x_shape=z16) == 4_144
    assert _count(AffineCouplingEmbedding(128, **ZEROS), (1, 3, 2)) == 16_640
    tanh = AffineCouplingEmbedding(128, scale_activation="tanh", **ZEROS)
    assert _count(tanh, (1, 3, 2)) == 16_640
    assert _count(PointwiseMLP(16, 16, **ZEROS), z) == 2_336
    assert _count(PointwiseMLP(16, 16, **ZEROS), (1, 3, 2)) == 320
    assert _count(PointwiseMLP(128, 128, **ZEROS), z16) == 18_688


@pytest.mark.parametrize("dx, cross_blocks, expected", [(2, 1, 771_824), (3, 3, 1_168_384)])
def test_parameter_counts_add_up_to_f_theta(dx, cross_blocks, expected):
    # The f_theta layout of the method note, section 5, from these blocks:
    # MNIST (d_x = 2, 1 cross block) and ModelNet (d_x = 3, 3 cross blocks).
    # (ModelNet - MNIST = 2 blocks of 198,272 + 16 weights of MLP_x's first
    # layer for the third input coordinate.)
    def ln(d):  # a LayerNormalization of width d: gamma and beta
        return 2 * d

    z16 = (1, 2, 16)
    total = _count(PointwiseMLP(16, 16, **ZEROS), (1, 2, 128)) + ln(16)  # MLP_z, LN
    total += _count(PointwiseMLP(16, 16, **ZEROS), (1, 2, dx)) + ln(16)  # MLP_x, LN
    total += _count(EquivariantBilinear(16, alpha_initializer="zeros"), z16, x_shape=z16) + ln(16)
    total += 2 * (_count(PointwiseMLP(128, 128, **ZEROS), z16) + ln(128))
    total += ln(128)  # z = LN(z + z_in)
    total += (2 + cross_blocks) * 198_272  # one block: checked above
    total += _count(FeedForward(512, **ZEROS), (1, 2, 128)) + ln(128)  # output
    assert total == expected


# ------------------------------------------------------------ serialisation


def _cases(rng):
    z, x = _normal(rng, 2, 5, D), _normal(rng, 2, 7, D)
    x_mask = _mask([7, 3], 7)
    kw = dict(num_heads=HEADS, ff_dim=FF, epsilon=1e-4, seed=7)
    return [
        (MaskedMultiHeadAttention(num_heads=HEADS, key_dim=8), (z, x), dict(key_mask=x_mask)),
        (FeedForward(FF, output_units=8, rate=0.2, seed=3), (z,), {}),
        (SelfAttentionBlock(norm_first=True, dropout=0.2, **kw), (x,), dict(mask=x_mask)),
        (CrossAttentionBlock(dropout=0.2, **kw), (z, x), dict(x_mask=x_mask)),
        (EquivariantBilinear(8, epsilon=1e-3), (z,), dict(x=x, x_mask=x_mask)),
        (PointwiseMLP(FF, 8, activation="gelu"), (x,), dict(mask=x_mask)),
        (MaskedMaxPooling(keepdims=True), (x,), dict(mask=x_mask)),
        (MaskedMeanPooling(), (x,), dict(mask=x_mask)),
        (AffineCouplingEmbedding(D, hidden_units=FF, scale_activation="tanh"),
         (x[..., :2],), {}),
        (ISAB(num_inducing_points=3, **kw), (x,), dict(mask=x_mask)),
        (PMA(num_seeds=2, use_rff=False, **kw), (x,), dict(mask=x_mask)),
    ]


def test_config_round_trip_same_outputs(rng):
    for layer, args, kwargs in _cases(rng):
        expected = layer(*args, **kwargs)
        config = layer.get_config()
        # Every constructor argument is in the config.
        names = set()
        for klass in type(layer).__mro__:
            if klass is keras.layers.Layer:
                break
            if "__init__" in vars(klass):
                names |= {
                    name
                    for name, p in inspect.signature(klass.__init__).parameters.items()
                    if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                }
        missing = names - {"self"} - set(config)
        assert not missing, (type(layer).__name__, missing)
        # Through the registered name, as model saving does.
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        assert type(restored) is type(layer)
        restored(*args, **kwargs)
        restored.set_weights(layer.get_weights())
        _equal(restored(*args, **kwargs), expected)


_MHA_PATHS = [f"{d}/{w}" for d in ("query", "key", "value", "attention_output")
              for w in ("kernel", "bias")]
_DENSE2_PATHS = [f"{d}/{w}" for d in ("hidden", "output") for w in ("kernel", "bias")]
_BLOCK_PATHS = (
    [f"attention/{p}" for p in _MHA_PATHS]
    + [f"feedforward/{p}" for p in _DENSE2_PATHS]
    + [f"{n}/{w}" for n in ("norm1", "norm2") for w in ("gamma", "beta")]
)
_PATHS = {
    "MaskedMultiHeadAttention": _MHA_PATHS,
    "FeedForward": _DENSE2_PATHS,
    "SelfAttentionBlock": _BLOCK_PATHS,
    "CrossAttentionBlock": _BLOCK_PATHS,
    "EquivariantBilinear": ["alpha", "bias", "norm/gamma", "norm/beta"],
    "PointwiseMLP": _DENSE2_PATHS,
    "MaskedMaxPooling": [],
    "MaskedMeanPooling": [],
    "AffineCouplingEmbedding": [f"{d}/{w}" for d in ("scale_hidden", "scale_output",
                                                     "shift_hidden", "shift_output")
                                for w in ("kernel", "bias")],
    "ISAB": (["inducing_points"] + [f"induce/{p}" for p in _BLOCK_PATHS]
             + [f"output_block/{p}" for p in _BLOCK_PATHS]),
    "PMA": ["seeds"] + [f"pool/{p}" for p in _BLOCK_PATHS],  # + rff/* with use_rff
}


def test_registered_names_and_variable_paths_are_stable(rng):
    # Saved models find the classes by these names and pretrained weights are
    # keyed by these paths: moving a class between modules must change neither.
    pma_rff = PMA(num_seeds=1, num_heads=HEADS, ff_dim=FF)
    cases = _cases(rng) + [(pma_rff, (_normal(rng, 2, 7, D),), {})]
    for layer, args, kwargs in cases:
        layer(*args, **kwargs)
        name = type(layer).__name__
        assert keras.saving.get_registered_name(type(layer)) == f"ddeq_keras>{name}"
        expected = _PATHS[name] + (["rff/kernel", "rff/bias"] if layer is pma_rff else [])
        assert [v.path for v in layer.weights] == [f"{layer.name}/{p}" for p in expected]


def test_blocks_in_a_functional_model(rng):
    z_in = keras.Input((5, D))
    x_in = keras.Input((7, D))
    m_in = keras.Input((7,), dtype="bool")
    x = SelfAttentionBlock(num_heads=HEADS, ff_dim=FF)(x_in, mask=m_in)
    z = CrossAttentionBlock(num_heads=HEADS, ff_dim=FF)(z_in, x, x_mask=m_in)
    out = MaskedMaxPooling()(z)
    model = keras.Model([z_in, x_in, m_in], out)
    assert model.output_shape == (None, D)
    z, xv = _normal(rng, 2, 5, D), _normal(rng, 2, 7, D)
    y = to_numpy(model([z, xv, _mask([7, 3], 7)]))
    assert y.shape == (2, D) and np.all(np.isfinite(y))
