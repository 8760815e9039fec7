"""Affine coupling embedding of low-dimensional points into the latent space."""

import keras
from keras import ops

from ddeq_keras.layers._common import ConfigFieldsMixin, dense
from ddeq_keras.ops import zero_padded


@keras.saving.register_keras_serializable(package="ddeq_keras")
class AffineCouplingEmbedding(ConfigFieldsMixin, keras.layers.Layer):
    """Zero-pads points to ``latent_dim`` and applies one affine coupling layer.

    Used by DDEQ point-cloud completion to move 2-D points into the 128-D
    latent space. With ``z = [z1, z2]`` split at ``latent_dim // 2`` (64/64)::

        y1 = z1
        y2 = z2 * exp(s(z1)) + t(z1)

    where ``s`` and ``t`` are ``Dense(hidden) -> act -> Dense(latent - half)``
    (64 -> 64 -> 64: 2 x 8,320 = 16,640 parameters for 128 latent dims, the
    method's count). The points occupy the first coordinates of ``z1``, which
    the coupling leaves unchanged: `project` (the first ``point_dim``
    coordinates) therefore recovers the points exactly, and equals
    ``inverse(y)[..., :point_dim]``. The model's output cloud is
    ``project(z*)``, the first two coordinates of the equilibrium.

    Choice of the scale: by default ``s(z1)`` enters ``exp`` unbounded, as in
    the method's formula (note that for embedded points ``z2 = 0``, so the
    scale has no effect on the embedding itself, only on `couple`/`inverse`
    of general latents; `couple` takes ``z2 * exp(s)`` to be 0 wherever
    ``z2 = 0``, even where ``exp(s)`` overflows). ``scale_activation="tanh"`` bounds it without adding
    parameters.

    Args:
        latent_dim: latent width (128).
        hidden_units: hidden width of ``s`` and ``t``; None uses
            ``latent_dim // 2``.
        activation: hidden activation of ``s`` and ``t``.
        scale_activation: optional activation on ``s`` (e.g. ``"tanh"``).
        kernel_initializer: initializer of the kernels.
        bias_initializer: initializer of the biases.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: points ``(batch, n, point_dim)`` with
            ``point_dim <= latent_dim // 2``.
        mask: boolean ``(batch, n)``; padded rows of the output are set to 0.

    Example:
    >>> from ddeq_keras.layers import AffineCouplingEmbedding
    >>> emb = AffineCouplingEmbedding(latent_dim=16)
    >>> pts = keras.random.normal((2, 30, 2))
    >>> z = emb(pts)
    >>> tuple(z.shape)
    (2, 30, 16)
    >>> np.array_equal(ops.convert_to_numpy(emb.project(z)), ops.convert_to_numpy(pts))
    True
    """

    config_fields = ("latent_dim", "hidden_units", "activation", "scale_activation",
                     "kernel_initializer", "bias_initializer")

    def __init__(
        self,
        latent_dim=128,
        hidden_units=None,
        activation="relu",
        scale_activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.hidden_units = None if hidden_units is None else int(hidden_units)
        self.activation = keras.activations.get(activation)
        self.scale_activation = (
            None if scale_activation is None else keras.activations.get(scale_activation)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.split = self.latent_dim // 2
        hidden = self.hidden_units or self.split
        self.scale_hidden = self._dense(hidden, self.activation, "scale_hidden")
        self.scale_output = self._dense(self.latent_dim - self.split, None, "scale_output")
        self.shift_hidden = self._dense(hidden, self.activation, "shift_hidden")
        self.shift_output = self._dense(self.latent_dim - self.split, None, "shift_output")

    def _dense(self, units, activation, name):
        return dense(self, units, activation, name)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.point_dim = input_shape[-1]
        if self.point_dim > self.split:
            raise ValueError(
                f"point_dim ({self.point_dim}) must be at most latent_dim // 2 "
                f"({self.split})."
            )
        half = input_shape[:-1] + (self.split,)
        hidden = input_shape[:-1] + (self.hidden_units or self.split,)
        for first, second in (
            (self.scale_hidden, self.scale_output),
            (self.shift_hidden, self.shift_output),
        ):
            first.build(half)
            second.build(hidden)

    def _scale_shift(self, z1):
        s = self.scale_output(self.scale_hidden(z1))
        if self.scale_activation is not None:
            s = self.scale_activation(s)
        t = self.shift_output(self.shift_hidden(z1))
        return s, t

    def pad(self, points):
        """Zero-pads ``(..., point_dim)`` points to ``(..., latent_dim)``."""
        widths = [[0, 0]] * (len(points.shape) - 1)
        return ops.pad(points, widths + [[0, self.latent_dim - points.shape[-1]]])

    def couple(self, z):
        """The forward coupling on latents ``(..., latent_dim)``."""
        z = ops.convert_to_tensor(z)
        z1, z2 = z[..., : self.split], z[..., self.split :]
        s, t = self._scale_shift(z1)
        # Where z2 is 0 (every embedded point) the scaled term is 0 whatever s
        # is, but exp(s) overflows for points ~100 from the origin and 0 * inf
        # is NaN: use s = 0 there (same value; the gradient, z2 exp(s) = 0,
        # stays 0 instead of 0 * inf).
        s = ops.where(z2 == 0, ops.zeros_like(s), s)
        return ops.concatenate([z1, z2 * ops.exp(s) + t], axis=-1)

    def inverse(self, y):
        """Inverts `couple`: ``z2 = (y2 - t(y1)) * exp(-s(y1))``."""
        y = ops.convert_to_tensor(y)
        y1, y2 = y[..., : self.split], y[..., self.split :]
        s, t = self._scale_shift(y1)
        return ops.concatenate([y1, (y2 - t) * ops.exp(-s)], axis=-1)

    def project(self, z, point_dim=None):
        """The first ``point_dim`` coordinates of latents (the output cloud).

        ``point_dim`` defaults to the width of the points the layer was built
        with.
        """
        z = ops.convert_to_tensor(z)
        return z[..., : (point_dim or self.point_dim)]

    def call(self, inputs, mask=None):
        return zero_padded(self.couple(self.pad(inputs)), mask)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.latent_dim,)
