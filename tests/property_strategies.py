"""Hypothesis strategies for point clouds, padded batches and broken inputs.

Hypothesis draws the structure (set sizes, kinds, scales, padding, seeds);
NumPy fills in the coordinates from a drawn seed, which keeps thousands of
points cheap to generate (drawing each float through hypothesis is not).
"""

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

# Cloud kinds: what real and adversarial clouds look like.
KINDS = ("normal", "uniform", "duplicates", "one_point", "grid", "flat_axis", "line")
# What padding rows hold: models must ignore it (NaN included).
GARBAGE = ("zeros", "huge", "nan", "inf", "copies")


@dataclass(frozen=True)
class CloudSpec:
    """How to make one cloud: ``n`` points of a ``kind``, scaled and offset."""

    n: int
    kind: str
    exponent: int      # scale 10**exponent
    offset: int        # translation 10**offset along a random direction (None: none)
    seed: int

    def make(self, d):
        """The ``(n, d)`` float32 cloud (every |coordinate| < 10**(max(exponent, offset) + 1))."""
        rng = np.random.default_rng(self.seed)
        n, kind = self.n, self.kind
        if kind == "normal":
            x = np.clip(rng.normal(size=(n, d)), -5, 5)
        elif kind == "uniform":
            x = rng.uniform(-1, 1, size=(n, d))
        elif kind == "duplicates":  # a few distinct points, each repeated
            distinct = rng.uniform(-1, 1, size=(int(rng.integers(1, 4)), d))
            x = distinct[rng.integers(0, len(distinct), size=n)]
        elif kind == "one_point":
            x = np.repeat(rng.uniform(-1, 1, size=(1, d)), n, axis=0)
        elif kind == "grid":  # small integers (exact in every dtype)
            x = rng.integers(-8, 9, size=(n, d)).astype("float64")
        elif kind == "flat_axis":  # one axis constant (a "1" drawn in a column)
            x = rng.uniform(-1, 1, size=(n, d))
            x[:, int(rng.integers(d))] = rng.uniform(-1, 1)
        else:  # "line": every point on one line through the origin
            x = rng.uniform(-1, 1, size=(n, 1)) * rng.normal(size=(1, d))
        scale = 1.0 if kind == "grid" else 10.0 ** self.exponent
        x = x * scale
        if self.offset is not None:
            direction = rng.normal(size=d)
            x = x + 10.0 ** self.offset * direction / max(np.linalg.norm(direction), 1e-12)
        return x.astype("float32")


@st.composite
def cloud_specs(draw, max_n, min_n=1, exponents=(-30, 14)):
    """A `CloudSpec` with 1..max_n points and a scale of 10**exponents."""
    n = draw(st.integers(min_n, max_n))
    kind = draw(st.sampled_from(KINDS))
    exponent = draw(st.integers(*exponents))
    offset = None
    if exponents[1] > exponents[0]:  # an offset up to the scale's range
        offset = draw(st.one_of(st.none(), st.integers(exponents[0], exponents[1] - 1)))
    seed = draw(st.integers(0, 2**31 - 1))
    return CloudSpec(n, kind, exponent, offset, seed)


def layout(clouds, d, length, rows, rng, garbage, order=None):
    """Packs clouds into a ``(rows, length, d)`` batch with padding anywhere.

    Each cloud's points go to random slots of its row (padding interleaved,
    not only at the end), in the order ``order[i]`` (a permutation, or None);
    padding holds ``garbage``; rows after the clouds hold filler clouds.

    Returns:
        ``(points float32, mask bool)``.
    """
    points = np.zeros((rows, length, d), "float32")
    mask = np.zeros((rows, length), bool)
    for i in range(rows):
        if i < len(clouds):
            cloud = clouds[i] if order is None else clouds[i][order[i]]
        else:  # filler: the batch composition must not matter either
            cloud = rng.normal(size=(int(rng.integers(1, length + 1)), d)).astype("float32")
        slots = np.sort(rng.choice(length, size=len(cloud), replace=False))
        points[i, slots] = cloud
        mask[i, slots] = True
    free = ~mask
    if garbage == "huge":
        points[free] = rng.choice([-1, 1], size=(int(free.sum()), d)) * 1e30
    elif garbage in ("nan", "inf"):
        points[free] = np.nan if garbage == "nan" else np.inf
    elif garbage == "copies":  # padding that looks like real points
        points[free] = rng.normal(size=(int(free.sum()), d)) * 3
    return points, mask


def as_dtype(points, mask, point_dtype, mask_dtype):
    """The batch in other dtypes (values of "grid" clouds survive every cast)."""
    with np.errstate(invalid="ignore", over="ignore"):
        cast = points.astype(point_dtype) if point_dtype != "int32" else \
            np.nan_to_num(points, posinf=0, neginf=0).astype("int32")
    return cast, mask.astype(mask_dtype)


# -- invalid inputs -----------------------------------------------------------
# name -> (how to break a valid {"points", "mask"} batch, the message it must raise)
def _nan(x, rng, value):
    points, mask = x["points"].copy(), x["mask"]
    rows, cols = np.nonzero(mask)
    k = int(rng.integers(len(rows)))
    points[rows[k], cols[k], int(rng.integers(points.shape[-1]))] = value
    return {"points": points, "mask": mask}


def _ragged(points):
    """The points as nested lists, one point short of a coordinate."""
    nested = points.tolist()
    nested[0][0] = nested[0][0][:-1]
    return nested


def _empty_row(x, rng):
    mask = x["mask"].copy()
    mask[int(rng.integers(len(mask)))] = False
    return {"points": x["points"], "mask": mask}


CORRUPTIONS = {
    "nan_point": (lambda x, rng: _nan(x, rng, np.nan), r"NaN or infinite coordinates"),
    "inf_point": (lambda x, rng: _nan(x, rng, rng.choice([np.inf, -np.inf])),
                  r"NaN or infinite coordinates"),
    "huge_point": (lambda x, rng: _nan(x, rng, rng.choice([-1, 1]) * 10.0 ** rng.uniform(15.1, 38)),
                   r"beyond \+-1e\+15 .*normalise"),
    "empty_sample": (_empty_row, r"has no valid entry for sample\(s\)"),
    "rank_2": (lambda x, rng: {"points": x["points"][0], "mask": x["mask"][0]},
               r"must have rank 3 \(batch, num_points, dim\)"),
    "rank_4": (lambda x, rng: {"points": x["points"][None], "mask": x["mask"]},
               r"must have rank 3 \(batch, num_points, dim\)"),
    "point_dim": (lambda x, rng: {"points": np.concatenate([x["points"]] * 2, -1),
                                  "mask": x["mask"]}, r"must have \d features|coordinates per point"),
    "mask_shape": (lambda x, rng: {"points": x["points"], "mask": x["mask"][:, :-1]},
                   r"`inputs\['mask'\]` must have shape \(batch, num_points\)"),
    "mask_rows": (lambda x, rng: {"points": x["points"], "mask": x["mask"][:-1]},
                  r"`inputs\['mask'\]` must have shape \(batch, num_points\)"),
    "no_points": (lambda x, rng: {"points": x["points"][:, :0], "mask": x["mask"][:, :0]},
                  r"is empty: it has no points"),
    "string_points": (lambda x, rng: {"points": x["points"].astype(str), "mask": x["mask"]},
                      r"`inputs\['points'\]` must hold real numbers"),
    "complex_points": (lambda x, rng: {"points": x["points"] + 1j, "mask": x["mask"]},
                       r"`inputs\['points'\]` must hold real numbers"),
    "bool_points": (lambda x, rng: {"points": x["points"] > 0, "mask": x["mask"]},
                    r"`inputs\['points'\]` must hold real numbers"),
    "string_mask": (lambda x, rng: {"points": x["points"], "mask": x["mask"].astype(str)},
                    r"`inputs\['mask'\]` must hold booleans or numbers"),
    "extra_key": (lambda x, rng: {**x, "labels": np.zeros(len(x["mask"]))},
                  r"unexpected keys \['labels'\]"),
    "no_points_key": (lambda x, rng: {"mask": x["mask"]}, r"must have a 'points' entry"),
    "ragged_points": (lambda x, rng: {"points": _ragged(x["points"]), "mask": x["mask"]},
                      r"`inputs\['points'\]` is not an array of numbers"),
}

# Raw clouds (lists of arrays, `Task.predict`): name -> (make the list, message).
RAW_CORRUPTIONS = {
    "empty_cloud": (lambda c, d, rng: c + [np.zeros((0, d))], r"Cloud \d+ is empty"),
    "nan_cloud": (lambda c, d, rng: c + [np.array([[np.nan] * d])], r"Cloud \d+ has 1 point"),
    "overflow_cloud": (lambda c, d, rng: c + [np.full((2, d), 1e300)],
                       r"Cloud \d+ has 2 point\(s\) with NaN or infinite .*float32"),
    "wrong_dim": (lambda c, d, rng: c + [np.zeros((3, d + 1))],
                  r"Cloud \d+ must have shape \(num_points, \d\)"),
    "flat_cloud": (lambda c, d, rng: c + [np.zeros(d)],
                   r"Cloud \d+ must have shape \(num_points, \d\)"),
    "batched_cloud": (lambda c, d, rng: c + [np.zeros((2, 3, d))],
                      r"Cloud \d+ must have shape \(num_points, \d\)"),
    "string_cloud": (lambda c, d, rng: c + [np.full((2, d), "a")],
                     r"Cloud \d+ must hold numbers"),
    "complex_cloud": (lambda c, d, rng: c + [np.zeros((2, d), complex)],
                      r"Cloud \d+ must hold numbers"),
    "ragged_cloud": (lambda c, d, rng: c + [[[0.0] * d, [0.0] * (d + 1)]],
                     r"Cloud \d+ (is not an array of numbers|must have shape)"),
    "empty_list": (lambda c, d, rng: [], r"Expected a non-empty list"),
}
