"""Builder configs: the options shared by file-based builders, and their identity.

TFDS stores prepared data under `<data_dir>/<builder>/<config name>/<version>`
and reuses whatever it finds there. The config name must therefore change
whenever an option that changes the data changes: `with_options` names a
derived config after a stable hash of all its option values, and
`check_prepared_options` refuses to open data prepared under the same name
with other values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import tensorflow_datasets as tfds

from ddeq_keras.datasets.readers.mesh import MESH_MODES

# Fields of `tfds.core.BuilderConfig` itself (name, version, description...):
# they label a config but do not change its data.
_LABEL_FIELDS = frozenset(f.name for f in dataclasses.fields(tfds.core.BuilderConfig))


def choice(default, choices):
    """A dataclass field whose value must be one of `choices` (checked by `check_options`)."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


@dataclasses.dataclass(eq=False)
class FileSourceConfig(tfds.core.BuilderConfig):
    """Options shared by the builders that read a folder of point / mesh files.

    Attributes:
        mesh_mode: how meshes become clouds: `"surface"`, `"vertices"` or
            `"vertices_voxel"` (see `readers.read_mesh_points`).
        num_samples: surface samples per mesh (`"surface"`).
        min_points, max_points: point range of `"vertices_voxel"`.
        seed: mixed with each file's path to seed its sampling.
        allow_links_outside: read files that symbolic links in the folder
            lead outside it to. Off by default: such files are skipped and
            reported, so that a link cannot make preparation read elsewhere.
    """

    mesh_mode: str = choice("surface", MESH_MODES)
    num_samples: int = 2048
    min_points: int = 500
    max_points: int = 800
    seed: int = 0
    allow_links_outside: bool = False


def config_options(config) -> dict:
    """The options of a config that shape its data, as a JSON-ready dict."""
    if config is None:
        return {}
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in _LABEL_FIELDS
    }


def check_options(config) -> None:
    """Checks each option's type (that of its default) and allowed values.

    Raises:
        ValueError: naming the config, the option, and what was expected.
    """
    if config is None:
        return
    for f in dataclasses.fields(config):
        if f.name in _LABEL_FIELDS:
            continue
        value = getattr(config, f.name)
        kind = type(f.default) if f.default is not dataclasses.MISSING else None
        # bool is an int in Python; neither may stand for the other here.
        if kind is not None and (type(value) is not kind and not (
            kind is float and type(value) is int
        )):
            raise ValueError(
                f"config {config.name!r}: option {f.name}={value!r} must be of type "
                f"{kind.__name__}, got {type(value).__name__}"
            )
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(
                f"config {config.name!r}: option {f.name}={value!r} is not one of {choices}"
            )


def options_digest(options) -> str:
    """A short hash of option values that does not depend on their order."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def base_config(name):
    """The registered config `name` (`"builder"` or `"builder/config"`) names.

    Returns:
        `(builder_name, config)`; `config` is None for a builder without configs.

    Raises:
        ValueError: the builder has no config of that name.
    """
    builder_name, _, config_name = name.partition("/")
    cls = tfds.builder_cls(builder_name)
    configs = {c.name: c for c in cls.BUILDER_CONFIGS}
    if not configs:
        return builder_name, None
    config_name = config_name or cls.DEFAULT_BUILDER_CONFIG_NAME or cls.BUILDER_CONFIGS[0].name
    if config_name not in configs:
        raise ValueError(
            f"{builder_name} has no config {config_name!r}; configs: {sorted(configs)}"
        )
    return builder_name, configs[config_name]


def with_options(base, options):
    """`base` with some options changed, named after all its option values.

    The name is `<base name>_<hash of every option value>`, so the same
    options always give the same name (prepared data is reused) and other
    options another (it is prepared afresh). An explicit `name` in
    `options` is kept as given; `check_prepared_options` then guards it.

    Args:
        base: a registered `BuilderConfig`.
        options: `{option: value}`; may include `name` and `description`.

    Returns:
        `base` itself when nothing changes, otherwise a new config.

    Raises:
        ValueError: an option `base` does not have, or a value of the wrong
            type or outside its allowed values.
    """
    options = dict(options)
    known = config_options(base)
    unknown = sorted(set(options) - set(known) - {"name", "description"})
    if unknown:
        raise ValueError(
            f"config {base.name!r} has no option {unknown}; options: {sorted(known)}"
        )
    merged = {**known, **{k: v for k, v in options.items() if k in known}}
    if merged == known and "name" not in options:
        return base
    name = options.pop("name", None) or f"{base.name}_{options_digest(merged)}"
    config = dataclasses.replace(base, name=name, **options)
    check_options(config)
    return config


def check_prepared_options(builder) -> None:
    """Refuses prepared data whose recorded options differ from the builder's config.

    Data prepared before options were recorded is accepted as it is.

    Raises:
        ValueError: naming the folder, the options that differ, and the fix.
    """
    recorded = builder.info.metadata.get("options") if builder.info.metadata else None
    if not recorded or not builder.is_prepared():
        return
    # JSON turns tuples into lists: compare like with like.
    current = json.loads(json.dumps(config_options(builder.builder_config)))
    differ = {
        k: (recorded[k], current[k]) for k in sorted(set(recorded) & set(current))
        if recorded[k] != current[k]
    }
    if differ:
        listed = ", ".join(f"{k}: prepared {a!r}, requested {b!r}" for k, (a, b) in differ.items())
        raise ValueError(
            f"{builder.name}/{builder.builder_config.name}: the data in {builder.data_dir} "
            f"was prepared with other options ({listed}). Give the config another name "
            "(or leave the name out to derive one from the options), use another "
            "data_dir, or delete that folder to prepare it again."
        )
