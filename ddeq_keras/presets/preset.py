"""`save_preset` writes a preset folder; `validate_preset` checks one completely."""

from pathlib import Path

from ddeq_keras.presets.card import build_card, check_card
from ddeq_keras.presets.errors import PresetError
from ddeq_keras.presets.format import (
    CARD_FILE,
    METRICS_FILE,
    REQUIRED_FILES,
    WEIGHTS_FILE,
    config_document,
    read_config,
    read_metrics,
    write_config,
    write_metrics,
)
from ddeq_keras.presets.loader import load_folder
from ddeq_keras.presets.weights import save_weights


def save_preset(model, folder, *, metadata=None, metrics=None, card_info=None):
    """Writes a built model as a preset folder, then validates the folder.

    Writes `config.json`, `model.safetensors`, `README.md` (the model card) and,
    when `metrics` are given, `metrics.json` (a stale `metrics.json` is removed
    otherwise: its numbers would not describe these weights).

    Args:
        model: a built Keras model made of ddeq_keras's registered classes and
            Keras built-ins.
        folder: the folder to write (created if needed).
        metadata: extra `config.json` keys (class names, point dimension,
            normalisation, solver, ...).
        metrics: metric records, each with exactly the keys `format.METRIC_KEYS`.
        card_info: what the card shows beyond the config (see `card.build_card`).

    Returns:
        The folder, as a `pathlib.Path`.

    Raises:
        PresetError: if the model, metadata or metrics cannot be written, or the
            written folder does not validate.

    Example (a tiny, untrained DDEQ):
    >>> from ddeq_keras.models import create_model
    >>> from ddeq_keras.presets import save_preset
    >>> model = create_model("ddeq_mnist", latent_dim=16, hidden_dim=4, bilinear_dim=4,
    ...                      num_heads=2, ff_dim=16)
    >>> record = {"dataset": "synthetic_rings", "split": "test", "metric": "accuracy",
    ...           "value": 0.5, "backend": "jax", "hardware": "2 CPU cores",
    ...           "date": "2026-01-01", "command": "python -m ddeq_keras"}
    >>> folder = save_preset(model, "zoo/ddeq_mnist", metrics=[record],
    ...                      card_info={"repo_id": "owner/ddeq-mnist"})
    >>> sorted(path.name for path in folder.iterdir())
    ['README.md', 'config.json', 'metrics.json', 'model.safetensors']
    """
    folder = Path(folder)
    document = config_document(model, metadata)
    folder.mkdir(parents=True, exist_ok=True)
    records = write_metrics(metrics, folder) if metrics is not None else None
    if records is None:
        (folder / METRICS_FILE).unlink(missing_ok=True)
    write_config(document, folder)
    save_weights(model, folder / WEIGHTS_FILE)
    build_card(folder.name, document, records, card_info).save(folder / CARD_FILE)
    validate_preset(folder)
    return folder


def validate_preset(folder, *, require_metrics=False):
    """Checks a preset folder: files, config, card, metrics, and that its weights load.

    Args:
        folder: the preset folder.
        require_metrics: also require `metrics.json` (publishing does).

    Returns:
        The folder, as a `pathlib.Path`.

    Raises:
        PresetError: naming the missing file or the problem found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PresetError(f"preset folder {folder} does not exist")
    required = REQUIRED_FILES + ((METRICS_FILE,) if require_metrics else ())
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise PresetError(f"preset folder {folder} lacks {', '.join(missing)}")
    read_config(folder)
    metrics = read_metrics(folder)
    check_card(folder / CARD_FILE, metrics)
    load_folder(folder)  # builds a fresh model and loads the weights into it
    return folder
