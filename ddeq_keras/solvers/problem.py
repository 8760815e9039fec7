"""The fixed-point problem in the space of measures, as the flow sees it.

An equilibrium of a DDEQ is a set of particles ``z`` whose image ``f(z)`` is the
same measure. The flow minimises ``F(z) = 1/2 MMD^2(z, f(z))`` (Riesz kernel).
"""

from keras import ops

from ddeq_keras import backend
from ddeq_keras.ops import count_valid, mmd2


class FlowProblem:
    """``F(z) = 1/2 MMD^2(z, h(z))`` for a batch of independent samples.

    ``h`` is the map with its frozen and padding particles held in place:
    ``h(z)_i = f(z)_i`` for movable particles and ``z0_i`` otherwise (frozen
    particles never move, so ``z_i = z0_i`` throughout; completion relies on
    this to keep the observed points fixed).

    Args:
        fn: callable ``fn(z) -> f(z)``, ``(batch, n, d) -> (batch, n, d)``.
        mask: boolean ``(batch, n)`` validity mask (padding is False), or None.
        frozen_mask: boolean ``(batch, n)``, True for particles that never move,
            or None.
        kernel: kernel name for the MMD (``"riesz"`` is the method's).
    """

    def __init__(self, fn, mask=None, frozen_mask=None, kernel="riesz"):
        self.fn = fn
        self.mask = mask
        self.frozen_mask = frozen_mask
        self.kernel = kernel

    def movable(self, z):
        """Boolean ``(batch, n, 1)``: particles the flow may move."""
        movable = ops.ones(ops.shape(z)[:2], dtype="bool")
        if self.mask is not None:
            movable = ops.logical_and(movable, ops.cast(self.mask, "bool"))
        if self.frozen_mask is not None:
            movable = ops.logical_and(
                movable, ops.logical_not(ops.cast(self.frozen_mask, "bool"))
            )
        return ops.expand_dims(movable, -1)

    def image(self, z):
        """``h(z)``: ``f(z)`` on movable particles, ``z`` elsewhere."""
        return ops.where(self.movable(z), self.fn(z), z)

    def mmd(self, z, image=None):
        """``MMD^2(z, h(z))`` per sample, ``(batch,)`` (``image``: ``h(z)`` if known)."""
        image = self.image(z) if image is None else image
        return mmd2(z, image, self.mask, self.mask, kernel=self.kernel)

    def mmd_and_velocity(self, z, higher_order=False):
        """Per-sample ``MMD^2(z, h(z))`` and the Wasserstein velocity at ``z``.

        The velocity is ``-N_valid * grad_z F(z)`` per sample: multiplying the
        per-particle gradient by the number of valid particles turns it into
        the Wasserstein gradient. The objective is the *sum* of the samples'
        ``F`` (not the mean), so each sample's velocity is independent of the
        batch. Non-movable particles get zero velocity.
        """

        def objective(zz):
            m = self.mmd(zz)
            return 0.5 * ops.sum(m), m

        (_, m), grad = backend.value_and_grad(
            objective, z, has_aux=True, higher_order=higher_order
        )
        n = count_valid(self.mask, z, dtype=z.dtype)
        velocity = -ops.reshape(n, (-1, 1, 1)) * grad
        velocity = ops.where(self.movable(z), velocity, ops.zeros_like(velocity))
        return m, velocity
