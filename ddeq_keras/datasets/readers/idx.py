"""IDX, the file format of MNIST (gzip-compressed or not)."""

from __future__ import annotations

import gzip
import zlib

import numpy as np

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_maybe_gzip(path) -> bytes:
    """Returns the bytes of `path`, gunzipped when it starts with the gzip magic.

    The magic number, not the file name, decides: people rename files.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from e
    return raw


def read_idx(path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzip-compressed or not.

    Args:
        path: path to e.g. `train-images-idx3-ubyte` or `...-ubyte.gz`.

    Returns:
        The array with the shape and dtype the header declares, e.g.
        `(60000, 28, 28)` uint8 for MNIST training images.

    Raises:
        ValueError: naming the file, when it is empty, the header is invalid
            or the data is shorter or longer than the header declares.

    Example (two blank 28 x 28 images, written as a gzip-compressed IDX file):

    >>> import gzip, struct
    >>> from ddeq_keras.datasets.readers import read_idx
    >>> with gzip.open("train-images-idx3-ubyte.gz", "wb") as f:
    ...     _ = f.write(struct.pack(">4I", 0x0803, 2, 28, 28) + bytes(2 * 28 * 28))
    >>> images = read_idx("train-images-idx3-ubyte.gz")
    >>> images.shape, images.dtype  # (60000, 28, 28) for MNIST's training images
    ((2, 28, 28), dtype('uint8'))
    """
    data = _read_maybe_gzip(path)
    if not data:
        raise ValueError(f"{path}: empty file (0 bytes)")
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02x}")
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_len:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {what}: header declares shape {shape} "
            f"({expected} bytes of data) but the file holds {actual} bytes"
        )
    return np.frombuffer(data, dtype, offset=header_len).reshape(shape).astype(
        dtype.newbyteorder("=")
    )
