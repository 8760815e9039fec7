"""`mnist_point_cloud`: MNIST digits as 2-D point clouds (TFDS builder)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ddeq_keras.datasets import _common, _report, readers

_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_CITATION = r"""
@article{lecun1998gradient,
  title={Gradient-based learning applied to document recognition},
  author={LeCun, Yann and Bottou, L{\'e}on and Bengio, Yoshua and Haffner, Patrick},
  journal={Proceedings of the IEEE},
  volume={86},
  number={11},
  pages={2278--2324},
  year={1998}
}
@inproceedings{geuter2025ddeq,
  title={{DDEQs}: Distributional Deep Equilibrium Models through {W}asserstein Gradient Flows},
  author={Geuter, Jonathan and Bonet, Cl{\'e}ment and Korba, Anna and Alvarez-Melis, David},
  booktitle={AISTATS},
  year={2025}
}
"""


def _name_variants(base):
    # Standard names, gzip or not, and the dotted spelling some mirrors use
    # ("train-images.idx3-ubyte").
    dotted = base.replace("-idx", ".idx")
    return [base, base + ".gz", dotted, dotted + ".gz"]


@dataclasses.dataclass(eq=False)
class MnistPointCloudConfig(tfds.core.BuilderConfig):
    """How digits become point clouds.

    Attributes:
        threshold: a pixel becomes a point when its intensity (0-255) is
            strictly above this. The default 0 keeps every inked pixel; on the
            real MNIST this gives 34-351 points per digit, which is exactly the
            "at most 351 points" of the public MNIST point-cloud set.
        max_points: cap on points per digit. When a digit has more pixels
            above the threshold, the `max_points` brightest are kept (ties go
            to the earlier pixel in row-major order), so the subset is
            deterministic and keeps the stroke cores.
    """

    threshold: int = 0
    max_points: int = 351


class MnistPointCloud(_common.BuilderBase):
    """MNIST digits as 2-D point clouds (DDEQ paper, section 7 of the method note).

    Every pixel above `threshold` becomes a point `(column, row)` in pixel
    units (0-27, float32); the label is the digit. Reads the four standard IDX
    files, gzip-compressed or not, from `manual_dir` (searched up to two
    folders deep, so `../shared/data` works) or downloads them.

    Example (three stand-in digits written as IDX files, instead of MNIST's):

    >>> import os, struct
    >>> import tensorflow_datasets as tfds
    >>> import ddeq_keras.datasets  # registers the builders
    >>> def write_idx(path, array):  # IDX: magic number, shape, raw bytes
    ...     with open(path, "wb") as f:
    ...         _ = f.write(struct.pack(f">I{array.ndim}I", 0x800 + array.ndim, *array.shape))
    ...         _ = f.write(array.tobytes())
    >>> digits = np.zeros((3, 28, 28), np.uint8)
    >>> digits[:, 4:24, 13:15] = 255  # a stroke of 40 inked pixels
    >>> os.makedirs("mnist", exist_ok=True)
    >>> for prefix in ("train", "t10k"):
    ...     write_idx(f"mnist/{prefix}-images-idx3-ubyte", digits)
    ...     write_idx(f"mnist/{prefix}-labels-idx1-ubyte", np.array([1, 1, 1], np.uint8))
    >>> builder = tfds.builder("mnist_point_cloud", data_dir="tfds")
    >>> builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
    ...     manual_dir="mnist"))
    Downloading and preparing dataset ...
    Dataset mnist_point_cloud downloaded and prepared to ...
    >>> builder.info.splits["train"].num_examples  # 60000 with the real files
    3
    >>> digit = next(iter(builder.as_dataset(split="train")))
    >>> tuple(digit["points"].shape), int(digit["label"])
    ((40, 2), 1)
    """

    BUILDER_CONFIGS = [
        MnistPointCloudConfig(
            name="default",
            description="Pixels with intensity > 0, at most 351 points per digit.",
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the four MNIST IDX files (train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, "
        f"gzip-compressed or not) in manual_dir; they are at {_URL}."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return _common.cloud_info(
            self,
            description=(
                "MNIST handwritten digits as 2-D point clouds: every pixel with "
                f"intensity > {config.threshold} becomes a point (column, row), "
                f"at most {config.max_points} points per digit (brightest kept)."
            ),
            num_dims=2,
            class_names=[str(i) for i in range(10)],
            source=False,
            homepage="http://yann.lecun.com/exdb/mnist/",
            citation=_CITATION,
        )

    def _find_files(self, dl_manager):
        manual_dir, usable, explicit = _common.manual_dir_of(dl_manager)
        if usable:
            found = {k: _common.find_file(manual_dir, _name_variants(v)) for k, v in _FILES.items()}
            if all(found.values()):
                return found
        if explicit or usable:
            raise _common.missing_data_error(
                self.name,
                manual_dir,
                [f"{v}[.gz]" for v in _FILES.values()],
                [f"{_URL}{v}.gz" for v in _FILES.values()],
            )
        return _common.download(
            dl_manager,
            {k: f"{_URL}{v}.gz" for k, v in _FILES.items()},
            self.name,
            [f"{v}[.gz]" for v in _FILES.values()],
        )

    def _split_generators(self, dl_manager):
        files = self._find_files(dl_manager)
        return {
            "train": self._generate_examples(files["train_images"], files["train_labels"], "train"),
            "test": self._generate_examples(files["test_images"], files["test_labels"], "test"),
        }

    def _generate_examples(self, images_path, labels_path, split):
        images_path, labels_path = os.fspath(images_path), os.fspath(labels_path)
        images = readers.read_idx(images_path)
        labels = readers.read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{images_path}: expected uint8 images (n, rows, cols), got "
                f"{images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"{labels_path}: {labels.shape[0] if labels.ndim else 0} labels for "
                f"{len(images)} images in {images_path}"
            )
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"{labels_path}: labels outside 0-9")

        config = self.builder_config
        log = _report.SkipLog(self.name, split, self.info.metadata)
        rows, cols = images.shape[1:]
        flat = images.reshape(len(images), -1)
        above = flat > config.threshold
        counts = above.sum(axis=1)
        # (column, row) of every pixel, precomputed once: the per-image work is
        # then only a boolean index.
        grid = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), -1).reshape(-1, 2)
        grid = grid.astype(np.float32)
        for i in range(len(images)):
            if counts[i] == 0:
                log.skip(f"{Path(images_path).name}[{i}]", readers.REASON_EMPTY,
                         f"no pixel above {config.threshold}")
                continue
            index = np.flatnonzero(above[i])
            if len(index) > config.max_points:
                # Brightest first; a stable sort breaks ties by pixel order.
                order = np.argsort(-flat[i, index].astype(np.int32), kind="stable")
                index = np.sort(index[order[: config.max_points]])
            log.kept += 1
            yield f"{split}_{i:05d}", {"points": grid[index], "label": int(labels[i])}
        log.finish()
