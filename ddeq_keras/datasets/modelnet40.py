"""`modelnet40`: ModelNet40 shapes as 3-D point clouds (TFDS builder)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ddeq_keras.datasets import _common, _config, _folders, _report, readers

HDF5_URL = "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip"
MESH_URL = "http://modelnet.cs.princeton.edu/ModelNet40.zip"

MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car",
    "chair", "cone", "cup", "curtain", "desk", "door", "dresser", "flower_pot",
    "glass_box", "guitar", "keyboard", "lamp", "laptop", "mantel", "monitor",
    "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox",
)  # fmt: skip

# Folder names of the PointNet HDF5 release, preferred in this order.
HDF5_FOLDERS = ("modelnet40_ply_hdf5_2048", "modelnet40_ply_hdf5_1024")

_CITATION = r"""
@inproceedings{wu20153d,
  title={3D ShapeNets: A Deep Representation for Volumetric Shapes},
  author={Wu, Zhirong and Song, Shuran and Khosla, Aditya and Yu, Fisher and
          Zhang, Linguang and Tang, Xiaoou and Xiao, Jianxiong},
  booktitle={CVPR},
  year={2015}
}
@inproceedings{qi2017pointnet,
  title={PointNet: Deep Learning on Point Sets for 3D Classification and Segmentation},
  author={Qi, Charles R. and Su, Hao and Mo, Kaichun and Guibas, Leonidas J.},
  booktitle={CVPR},
  year={2017}
}
"""


@dataclasses.dataclass(eq=False)
class ModelNet40Config(_config.FileSourceConfig):
    """Which ModelNet40 release to read and how meshes become clouds.

    Besides the options of `FileSourceConfig` (`mesh_mode`: `"surface"` or
    `"vertices_voxel"` for the mesh release, sampling sizes, seed,
    `allow_links_outside`):

    Attributes:
        source: `"hdf5"` (PointNet's `modelnet40_ply_hdf5_2048` release, or the
            same layout with 1,024 points) or `"mesh"` (the original OFF files,
            `ModelNet40/<class>/{train,test}/<class>_<id>.off`).
    """

    source: str = _config.choice("hdf5", ("hdf5", "mesh"))


class Modelnet40(_common.BuilderBase):
    """ModelNet40 (Wu et al. 2015): 12,311 CAD models in 40 classes.

    Configs:
      * `hdf5` (default): PointNet's HDF5 release, each shape as 2,048 (or,
        for the `modelnet40_ply_hdf5_1024` layout, 1,024) surface points
        already centred and scaled to the unit sphere. The official split
        (9,843 train / 2,468 test).
      * `mesh_surface`: the original OFF meshes, 2,048 area-weighted surface
        samples per mesh (same official split).
      * `mesh_vertices_voxel`: the DDEQ authors' variant: the mesh vertices,
        voxel-grid downsampled to 500-800 points per shape. Their accuracies
        are not comparable with tables on the usual 1,024-point samples.

    Features: `points` (n, 3) float32, `label` (the 40 class names), `source`
    (the shape's file, e.g. `airplane/airplane_0001.ply`, when known).

    Example (a stand-in tree of two classes, one cone mesh per class and split):

    >>> import os
    >>> import trimesh
    >>> import ddeq_keras.datasets as dd
    >>> for name in ("cone", "tent"):
    ...     for split in ("train", "test"):
    ...         os.makedirs(f"ModelNet40/{name}/{split}", exist_ok=True)
    ...         mesh = trimesh.creation.cone(radius=0.5, height=1.0)
    ...         _ = mesh.export(f"ModelNet40/{name}/{split}/{name}_0001.off")
    >>> builder = dd.prepare("modelnet40/mesh_surface", data_dir="tfds",
    ...                      manual_dir="ModelNet40")
    Downloading and preparing dataset ...
    Dataset modelnet40 downloaded and prepared to ...
    >>> builder.info.splits["test"].num_examples  # 2468 with the real meshes
    2
    >>> shape = next(iter(builder.as_dataset(split="test")))
    >>> tuple(shape["points"].shape)  # surface samples
    (2048, 3)
    """

    name = "modelnet40"
    BUILDER_CONFIGS = [
        ModelNet40Config(
            name="hdf5",
            source="hdf5",
            description="PointNet HDF5 release (2,048 or 1,024 surface points per shape).",
        ),
        ModelNet40Config(
            name="mesh_surface",
            source="mesh",
            mesh_mode="surface",
            description="Original OFF meshes, 2,048 surface samples per shape.",
        ),
        ModelNet40Config(
            name="mesh_vertices_voxel",
            source="mesh",
            mesh_mode="vertices_voxel",
            description=(
                "DDEQ authors' variant: OFF mesh vertices voxel-downsampled to "
                "500-800 points per shape."
            ),
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "For config hdf5: put modelnet40_ply_hdf5_2048.zip, or its extracted folder "
        "(ply_data_{train,test}*.h5), or the same layout with 1,024 points "
        f"(modelnet40_ply_hdf5_1024/) in manual_dir; source: {HDF5_URL}. "
        "For the mesh configs: put ModelNet40.zip or its extracted ModelNet40/ "
        f"folder in manual_dir; source: {MESH_URL}."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return _common.cloud_info(
            self,
            description="ModelNet40 CAD models as 3-D point clouds, official split. "
            + (self.builder_config.description or ""),
            num_dims=3,
            class_names=list(MODELNET40_CLASSES),
            homepage="https://modelnet.cs.princeton.edu/",
            citation=_CITATION,
        )

    # -- HDF5 ---------------------------------------------------------------

    def _hdf5_folder(self, dl_manager) -> Path:
        manual_dir, usable, explicit = _common.manual_dir_of(dl_manager)
        if usable:
            found = _find_hdf5_folder(manual_dir)
            if found is None:
                archive = _common.find_file(manual_dir, ["modelnet40_ply_hdf5_2048.zip"])
                if archive is not None:
                    found = _find_hdf5_folder(_common.extract_archive(dl_manager, archive))
            if found is not None:
                return found
        if explicit or usable:
            raise _common.missing_data_error(
                f"{self.name}/{self.builder_config.name}",
                manual_dir,
                [
                    "ply_data_train*.h5 and ply_data_test*.h5 (datasets `data` (n, p, 3), "
                    "`label` (n, 1)), e.g. in modelnet40_ply_hdf5_2048/ or "
                    "modelnet40_ply_hdf5_1024/",
                    "or the archive modelnet40_ply_hdf5_2048.zip",
                ],
                [HDF5_URL],
            )
        archive = _common.download(
            dl_manager, HDF5_URL, self.name, ["modelnet40_ply_hdf5_2048.zip (or its folder)"]
        )
        found = _find_hdf5_folder(_common.extract_archive(dl_manager, archive))
        if found is None:
            raise ValueError(f"{archive}: holds no ply_data_train*.h5 files")
        return found

    def _generate_hdf5(self, folder: Path, split):
        import h5py

        _check_shape_names(folder)
        files = _hdf5_split_files(folder, split)
        log = _report.SkipLog(f"{self.name}/{self.builder_config.name}", split, self.info.metadata)
        for path in files:
            try:
                with h5py.File(path, "r") as h5:
                    if "data" not in h5 or "label" not in h5:
                        raise ValueError(f"datasets {list(h5.keys())}, expected 'data' and 'label'")
                    data = np.asarray(h5["data"][...], np.float32)
                    labels = np.asarray(h5["label"][...]).reshape(-1)
            except (OSError, KeyError, ValueError, TypeError) as e:
                raise ValueError(f"{path}: not a readable ModelNet40 HDF5 file ({e})") from e
            if data.ndim != 3 or data.shape[2] != 3 or len(labels) != len(data):
                raise ValueError(
                    f"{path}: expected `data` (n, p, 3) and `label` (n, 1), got "
                    f"{data.shape} and {labels.shape}"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= len(MODELNET40_CLASSES)):
                raise ValueError(f"{path}: labels outside 0-{len(MODELNET40_CLASSES) - 1}")
            sources = _id2file(path, len(data))
            finite = np.isfinite(data).all(axis=(1, 2))
            for i in range(len(data)):
                if not finite[i]:
                    log.skip(f"{path.name}[{i}]", readers.REASON_NON_FINITE)
                    continue
                log.kept += 1
                yield f"{path.stem}_{i:05d}", {
                    "points": data[i],
                    "label": int(labels[i]),
                    "source": sources[i],
                }
        log.finish()

    # -- meshes ---------------------------------------------------------------

    def _mesh_root(self, dl_manager) -> Path:
        manual_dir, usable, explicit = _common.manual_dir_of(dl_manager)
        classes = set(MODELNET40_CLASSES)
        if usable:
            root = _folders.find_class_root(manual_dir, classes)
            if root is None:
                archive = _common.find_file(manual_dir, ["ModelNet40.zip"])
                if archive is not None:
                    root = _folders.find_class_root(
                        _common.extract_archive(dl_manager, archive), classes
                    )
            if root is not None:
                return root
        if explicit or usable:
            raise _common.missing_data_error(
                f"{self.name}/{self.builder_config.name}",
                manual_dir,
                [
                    "ModelNet40/<class>/{train,test}/<class>_<id>.off",
                    "or the archive ModelNet40.zip",
                ],
                [MESH_URL],
            )
        archive = _common.download(
            dl_manager, MESH_URL, self.name, ["ModelNet40.zip (or its ModelNet40/ folder)"]
        )
        root = _folders.find_class_root(_common.extract_archive(dl_manager, archive), classes)
        if root is None:
            raise ValueError(f"{archive}: holds no ModelNet40 class folders")
        return root

    def _generate_mesh(self, root: Path, files, split):
        config = self.builder_config
        log = _report.SkipLog(f"{self.name}/{config.name}", split, self.info.metadata)
        return _common.file_examples(log, root, files, config, num_dims=3)

    # -- TFDS entry points ----------------------------------------------------

    def _generate_examples(self, split, folder=None, files=None):
        if self.builder_config.source == "hdf5":
            return self._generate_hdf5(folder, split)
        return self._generate_mesh(folder, files, split)

    def _split_generators(self, dl_manager):
        if self.builder_config.source == "hdf5":
            folder = self._hdf5_folder(dl_manager)
            return {split: self._generate_examples(split, folder) for split in ("train", "test")}
        root = self._mesh_root(dl_manager)
        scan = _folders.scan_class_folders(root, (".off",))
        unknown = sorted(set(scan.class_names) - set(MODELNET40_CLASSES))
        if unknown:
            raise ValueError(f"{root}: folders {unknown} are not ModelNet40 classes")
        missing = [s for s in ("train", "test") if s not in scan.splits]
        if missing:
            raise ValueError(
                f"{root}: no .off files in <class>/{missing[0]}/ folders; expected "
                "ModelNet40/<class>/{train,test}/<class>_<id>.off"
            )
        return {
            split: self._generate_examples(split, root, scan.splits[split])
            for split in ("train", "test")
        }


def _find_hdf5_folder(root):
    """The folder under `root` holding `ply_data_train*.h5`, preferring 2,048 points."""
    root = Path(root)
    candidates = [root / name for name in HDF5_FOLDERS] + [root]
    candidates += [root / "data" / name for name in HDF5_FOLDERS]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("ply_data_train*.h5")):
            return folder
    return None


def _check_shape_names(folder: Path):
    """Refuses a release whose label order differs from the standard one.

    Labels are stored as integers; a different `shape_names.txt` would map
    every shape to the wrong class name without any other sign.
    """
    path = folder / "shape_names.txt"
    if path.exists():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if names != list(MODELNET40_CLASSES):
            raise ValueError(
                f"{path}: class names {names[:5]}... differ from the 40 ModelNet40 "
                "classes in their standard order; the integer labels would be misread"
            )


def _hdf5_split_files(folder: Path, split):
    """The h5 files of a split, from `<split>_files.txt` or by name.

    PointNet's lists hold paths like `data/modelnet40_ply_hdf5_2048/x.h5`:
    only the file name is used, resolved in `folder`.
    """
    listing = folder / f"{split}_files.txt"
    if listing.exists():
        lines = listing.read_text().splitlines()
        names = [Path(line.strip()).name for line in lines if line.strip()]
        files = [folder / n for n in names]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise ValueError(f"{listing} lists files that do not exist: {missing}")
    else:
        files = sorted(folder.glob(f"ply_data_{split}*.h5"), key=_natural_key)
    if not files:
        raise ValueError(f"{folder}: no ply_data_{split}*.h5 files")
    return files


def _natural_key(path):
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    return (int(digits) if digits else -1, path.name)


def _id2file(h5_path: Path, count):
    """Source shape names from PointNet's `ply_data_<split>_<i>_id2file.json`."""
    stem = h5_path.stem  # ply_data_train0
    split = "train" if "train" in stem else "test"
    index = stem.rsplit(split, 1)[-1]
    path = h5_path.with_name(f"ply_data_{split}_{index}_id2file.json")
    if path.exists():
        try:
            names = json.loads(path.read_text())
        except (ValueError, OSError):
            names = None
        if isinstance(names, list) and len(names) == count:
            return [str(n) for n in names]
        _report.logger.warning(
            "%s: unreadable or does not list %d shapes; `source` left empty", path, count
        )
    return [""] * count


__all__ = ["Modelnet40", "ModelNet40Config", "MODELNET40_CLASSES"]
