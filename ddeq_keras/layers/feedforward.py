"""Position-wise feed-forward layer whose dropout mask can be drawn once.

Inside a DDEQ the map ``f`` is called hundreds of times per forward pass (once
per flow step). Dropout must then use *one* mask for the whole solve, so that
the fixed-point problem is well defined, and no random state may be consumed
inside those calls (under JAX they happen inside ``jax.grad`` inside a loop,
where advancing a `keras.random.SeedGenerator` leaks tracers). `FeedForward`
therefore separates drawing the mask (`FeedForward.sample_dropout_mask`, once
per forward pass) from using it (``call(..., dropout_mask=mask)``, any number
of times, pure).
"""

import keras
from keras import ops

from ddeq_keras.layers._common import ConfigFieldsMixin, dense, dropout_rate


def apply_dropout_mask(h, dropout_mask, rate):
    """Multiplies ``h`` by a dropout keep-mask broadcast over the set axis.

    Args:
        h: activations ``(batch, n, units)`` (or ``(batch, units)``).
        dropout_mask: a float keep-mask already scaled by ``1 / (1 - rate)``,
            or a boolean keep-mask (then scaled here), of shape
            ``(batch, 1, units)``; ``None`` returns ``h`` unchanged.
        rate: the dropout rate (used to scale a boolean mask).

    Returns:
        ``h`` with dropped units set to 0 and kept ones scaled.
    """
    if dropout_mask is None:
        return h
    while len(dropout_mask.shape) > len(h.shape):
        dropout_mask = ops.squeeze(dropout_mask, axis=1)
    while len(dropout_mask.shape) < len(h.shape):
        dropout_mask = ops.expand_dims(dropout_mask, axis=1)
    if "bool" in str(dropout_mask.dtype):
        scale = ops.cast(1.0 / (1.0 - rate), h.dtype)
        return ops.where(dropout_mask, h * scale, ops.zeros_like(h))
    return h * ops.cast(dropout_mask, h.dtype)


@keras.saving.register_keras_serializable(package="ddeq_keras")
class FeedForward(ConfigFieldsMixin, keras.layers.Layer):
    """Two-layer position-wise MLP with dropout on the hidden layer.

    ``y = W2 dropout(act(W1 x + b1)) + b2``, applied to every element of a set
    (the last axis is the feature axis). Dropout acts only on the hidden
    layer. Its keep-mask has shape ``(batch, 1, hidden_units)``: one mask per
    set, shared by all of the set's elements (particles).

    Dropout rules of ``call``:
    - ``dropout_mask`` given: it is applied, whatever ``training`` says, and no
      random state is touched (use this inside equilibrium solvers).
    - ``dropout_mask`` is None and ``training`` is truthy and ``rate > 0``: a
      fresh mask is drawn from the layer's own seed generator (ordinary
      dropout).
    - otherwise: no dropout.

    Args:
        hidden_units: width of the hidden layer (512 in the DDEQ network).
        output_units: output width; None keeps the input width.
        rate: dropout rate of the hidden layer (0.1 in the DDEQ network).
        activation: hidden activation.
        use_bias: whether both dense layers have biases.
        kernel_initializer: initializer of both kernels.
        bias_initializer: initializer of both biases.
        seed: seed of the layer's `keras.random.SeedGenerator`.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: ``(batch, n, features)``.
        dropout_mask: optional keep-mask from `sample_dropout_mask`.
        training: Keras training flag.

    Example:
    >>> from ddeq_keras.layers import FeedForward
    >>> ff = FeedForward(hidden_units=16, rate=0.1)
    >>> z = keras.random.normal((4, 10, 8))
    >>> keep = ff.sample_dropout_mask(4, training=True)  # draw once
    >>> tuple(keep.shape)  # one mask per set, shared by its elements
    (4, 1, 16)
    >>> y1 = ff(z, dropout_mask=keep)
    >>> y2 = ff(z, dropout_mask=keep)
    >>> np.array_equal(ops.convert_to_numpy(y1), ops.convert_to_numpy(y2))
    True
    """

    config_fields = ("hidden_units", "output_units", "rate", "activation", "use_bias",
                     "kernel_initializer", "bias_initializer", "seed")

    def __init__(
        self,
        hidden_units=512,
        output_units=None,
        rate=0.1,
        activation="relu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_units = int(hidden_units)
        self.output_units = None if output_units is None else int(output_units)
        self.rate = dropout_rate(rate, "rate")
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self.hidden_dense = None
        self.output_dense = None

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        units = self.output_units or input_shape[-1]
        self.hidden_dense = dense(self, self.hidden_units, self.activation, "hidden")
        self.hidden_dense.build(input_shape)
        self.output_dense = dense(self, units, None, "output")
        self.output_dense.build(input_shape[:-1] + (self.hidden_units,))

    def sample_dropout_mask(self, batch_size, training=None, dtype=None):
        """Draws one dropout keep-mask per set, to be reused across calls.

        Args:
            batch_size: number of sets in the batch.
            training: returns None unless truthy.
            dtype: dtype of the mask (default: the layer's compute dtype).

        Returns:
            ``(batch_size, 1, hidden_units)`` tensor of ``0`` and
            ``1 / (1 - rate)``, or None when ``training`` is falsy or
            ``rate == 0`` (no dropout).
        """
        if not training or self.rate == 0.0:
            return None
        dtype = dtype or self.compute_dtype
        uniform = keras.random.uniform(
            (batch_size, 1, self.hidden_units), seed=self.seed_generator
        )
        keep = ops.cast(uniform >= self.rate, dtype)
        return keep * ops.cast(1.0 / (1.0 - self.rate), dtype)

    def call(self, inputs, dropout_mask=None, training=None):
        h = self.hidden_dense(inputs)
        if dropout_mask is None and training and self.rate > 0.0:
            dropout_mask = self.sample_dropout_mask(
                ops.shape(inputs)[0], training=True, dtype=h.dtype
            )
        h = apply_dropout_mask(h, dropout_mask, self.rate)
        return self.output_dense(h)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.output_units or input_shape[-1],)
