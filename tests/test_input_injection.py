"""``residual="initial"``: the map adds back each particle's start, not its iterate.

Why it exists: with the authors' residual (``"iterate"``) particles that coincide
map to coincident particles, so a contracting map's only equilibrium has every
particle at one point (the README's "collapsed equilibrium"), and no gradient
taken at such a point can pull the particles apart. With ``"initial"`` the map
sees each particle's start, so coincident iterates can map apart and the
equilibrium can stay spread. Tolerances: one application of the map in float32,
sums in another order, 1e-5.
"""

import numpy as np
import pytest

import keras
from conftest import to_numpy
from ddeq_keras.models import DDEQBackbone, DDEQCompleter, DDEQNetwork
from ddeq_keras.models.configs import build_ddeq

TINY = dict(latent_dim=16, hidden_dim=4, bilinear_dim=4, num_heads=2, ff_dim=32)


def _network(residual, rng):
    f = DDEQNetwork(num_cross_blocks=1, residual=residual, seed=0, **TINY)
    x = rng.normal(size=(2, 30, 2)).astype("float32")
    f.build_for((2, 6, 16), x.shape)
    return f, f.compute_context(x, np.ones((2, 30), bool))


def test_coincident_particles_map_apart_only_with_the_initial_residual(rng):
    together = np.repeat(rng.normal(size=(2, 1, 16)), 6, axis=1).astype("float32")
    starts = rng.normal(size=(2, 6, 16)).astype("float32")
    f, context = _network("iterate", rng)
    out = to_numpy(f(together, context))
    # The collapse mechanism: equal inputs, equal outputs (exactly, row by row).
    np.testing.assert_allclose(out, np.repeat(out[:, :1], 6, axis=1), atol=1e-5)
    f, context = _network("initial", rng)
    out = to_numpy(f(together, {**context, "initial": starts}))
    assert np.min(np.std(out, axis=1).mean(-1)) > 0.1  # spread over the particles


def test_initial_residual_is_equivariant_in_particles_and_starts_together(rng):
    f, context = _network("initial", rng)
    z = rng.normal(size=(2, 6, 16)).astype("float32")
    starts = rng.normal(size=(2, 6, 16)).astype("float32")
    perm = rng.permutation(6)
    out = to_numpy(f(z, {**context, "initial": starts}))
    permuted = to_numpy(f(z[:, perm], {**context, "initial": starts[:, perm]}))
    np.testing.assert_allclose(permuted, out[:, perm], atol=1e-5)


def test_bad_residual_and_missing_starts_are_named(rng):
    with pytest.raises(ValueError, match="`residual` must be one of"):
        DDEQNetwork(residual="start", **TINY)
    f, context = _network("initial", rng)
    with pytest.raises(ValueError, match=r"context\['initial'\]"):
        f(rng.normal(size=(2, 6, 16)).astype("float32"), context)


def test_backbone_hands_the_map_its_starts_and_round_trips(rng):
    x = {"points": rng.normal(size=(2, 30, 2)).astype("float32"),
         "mask": np.ones((2, 30), bool)}
    z0 = rng.normal(size=(2, 6, 16)).astype("float32")
    outs = {}
    for residual in ("iterate", "initial"):
        keras.utils.set_random_seed(3)  # the same weights for both
        backbone = DDEQBackbone(point_dim=2, residual=residual, seed=0, **TINY)
        outs[residual] = to_numpy(backbone({**x, "particles": z0}, training=False)["particles"])
        config = backbone.get_config()
        assert config["residual"] == residual
        assert DDEQBackbone.from_config(config).network.residual == residual
    assert not np.allclose(outs["iterate"], outs["initial"], atol=1e-3)


def test_completer_with_initial_residual_keeps_observed_points(rng):
    model = build_ddeq(DDEQCompleter, {"point_dim": 2, "num_particles": None,
                                       "num_cross_blocks": 1, "residual": "initial",
                                       "max_steps": 8, **TINY})
    points = rng.normal(size=(2, 20, 2)).astype("float32")
    mask = np.arange(20)[None] < np.array([[14], [9]])
    out = model({"points": np.where(mask[..., None], points, 0), "mask": mask})
    np.testing.assert_array_equal(to_numpy(out["points"])[mask], points[mask])
    assert model.backbone.network.residual == "initial"


def test_completer_with_initial_residual_trains(rng):
    keras.utils.set_random_seed(1)
    angle = rng.uniform(0, 2 * np.pi, (32, 16))
    full = np.stack([np.cos(angle), np.sin(angle)], -1).astype("float32")
    keep = angle < np.pi  # the upper half is observed
    x = {"points": np.where(keep[..., None], full, 0).astype("float32"), "mask": keep}
    y = {"points": full, "mask": np.ones((32, 16), bool)}
    model = build_ddeq(DDEQCompleter, {"point_dim": 2, "num_particles": None,
                                       "num_cross_blocks": 1, "residual": "initial",
                                       "max_steps": 8, "seed": 1, **TINY})
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model({k: v[:2] for k, v in x.items()})  # build the weights
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][0]
    changed = [not np.array_equal(b, to_numpy(w)) for b, w in zip(before, model.trainable_weights)]
    assert np.mean(changed) > 0.9  # the map, the encoder and the embedding all learn
