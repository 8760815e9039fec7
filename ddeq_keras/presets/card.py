"""The Hub model card (`README.md`) of a preset, and the metrics table.

The card is written with `huggingface_hub.ModelCard` / `ModelCardData`: YAML front
matter (``library_name: keras``, license, tags, datasets, ``model-index`` built from
`metrics.json`) and a body with the one-call usage, the training recipe and command,
the metrics table (generated from `metrics.json`, never typed), how the numbers were
measured, limitations and the DDEQ paper's citation.
"""

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ddeq_keras.presets.errors import PresetError

REQUIRED_TAGS = ("point-cloud", "deep-equilibrium", "keras")
DEFAULT_LICENSE = "apache-2.0"

CITATION = """\
@inproceedings{geuter2025ddeqs,
  title     = {{DDEQs}: Distributional Deep Equilibrium Models through {Wasserstein} Gradient Flows},
  author    = {Geuter, Jonathan and Bonet, Cl{\\'e}ment and Korba, Anna and Alvarez-Melis, David},
  booktitle = {Proceedings of the 28th International Conference on Artificial Intelligence and Statistics (AISTATS)},
  year      = {2025},
  eprint    = {2503.01140},
  archivePrefix = {arXiv}
}"""

NO_METRICS = "No measured metrics yet."
_COLUMNS = ("dataset", "split", "metric", "value", "backend", "hardware", "date")


def _cell(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def metrics_table(metrics, first_column=None):
    """A markdown table of metric records (see `format.METRIC_KEYS`).

    Args:
        metrics: a list of records, or None / empty for `NO_METRICS`.
        first_column: optional ``(title, values)``: an extra leading column (the
            preset name in the zoo-wide table), one value per record.

    Returns:
        The table as a string (no trailing newline).
    """
    if not metrics:
        return NO_METRICS
    titles = list(_COLUMNS)
    rows = [[_cell(record[key]) for key in _COLUMNS] for record in metrics]
    if first_column is not None:
        title, values = first_column
        titles.insert(0, title)
        rows = [[_cell(value), *row] for value, row in zip(values, rows, strict=True)]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _eval_results(metrics, task_type, task_name):
    return [
        EvalResult(task_type=task_type, task_name=task_name, dataset_type=m["dataset"],
                   dataset_name=m["dataset"], dataset_split=m["split"], metric_type=m["metric"],
                   metric_name=f"{m['metric']} ({m['backend']})", metric_value=m["value"])
        for m in metrics
    ]


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def build_card(name, document, metrics=None, card_info=None):
    """The model card of a preset.

    Args:
        name: the preset's name (its folder name).
        document: its `config.json` content (class name and metadata are shown).
        metrics: its validated metric records, or None.
        card_info: optional dict: ``repo_id`` (for the usage line), ``title``,
            ``description``, ``license``, ``datasets`` (Hub dataset ids), ``tags``,
            ``task_type`` / ``task_name`` (for model-index), ``training`` (the recipe,
            markdown), ``command`` (the training command), ``intended_use``,
            ``limitations`` (a string or a list of strings).

    Returns:
        A `huggingface_hub.ModelCard`.
    """
    info = dict(card_info or {})
    metrics = metrics or []
    datasets = _as_list(info.get("datasets")) or sorted({m["dataset"] for m in metrics})
    tags = list(REQUIRED_TAGS) + [t for t in _as_list(info.get("tags")) if t not in REQUIRED_TAGS]
    data = ModelCardData(
        library_name="keras", license=info.get("license", DEFAULT_LICENSE), tags=tags,
        datasets=datasets or None, model_name=name,
        eval_results=_eval_results(metrics, info.get("task_type", "other"),
                                   info.get("task_name", "point-cloud task")) or None,
    )
    source = f"hf://{info['repo_id']}" if info.get("repo_id") else name
    metadata = {k: v for k, v in document.items()
                if k not in ("format_version", "config", "build_config")}
    details = "\n".join(f"- `{key}`: `{value}`" for key, value in metadata.items())
    training = info.get("training") or "Not recorded for this preset."
    command = info.get("command")
    commands = sorted({m["command"] for m in metrics})
    limitations = _as_list(info.get("limitations")) + [
        "Outputs agree across JAX, TensorFlow and PyTorch up to float32 rounding, which the "
        "equilibrium solver can amplify (see the project's cross-backend tests).",
        "Measured only on the datasets and splits listed above.",
    ]
    body = [
        f"# {info.get('title', name)}", "",
        info.get("description", f"A `{document['class_name']}` preset of ddeq-keras "
                 "(Distributional Deep Equilibrium Models for Keras 3)."), "",
        "## Usage", "",
        "On any backend (`KERAS_BACKEND=jax|tensorflow|torch`), in one call:", "",
        "```python", "import ddeq_keras", "",
        f'model = ddeq_keras.from_pretrained("{source}")', "```", "",
        "## Model", "", details, "",
        "## Intended use", "",
        info.get("intended_use", "Research on point clouds seen as probability measures."), "",
        "## Training", "", training, "",
    ]
    if command:
        body += ["```bash", command, "```", ""]
    body += [
        "## Metrics", "", metrics_table(metrics), "",
        "### How measured", "",
        "The table is generated from this repository's `metrics.json`; each row names the "
        "backend and hardware it was measured on. Commands:", "",
    ]
    body += [f"- `{c}`" for c in commands] or ["- none recorded"]
    body += ["", "## Limitations", ""] + [f"- {item}" for item in limitations]
    body += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def check_card(path, metrics=None):
    """Parses a card and checks its front matter and metrics against `metrics`.

    Raises:
        PresetError: if it has no front matter, is not a keras card, lacks a required
            tag, or its model-index or table disagree with `metrics.json`.
    """
    try:
        text = path.read_text(encoding="utf-8")
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as error:  # huggingface_hub raises several types for bad YAML
        raise PresetError(f"{path} does not parse as a model card: {error}") from None
    if not text.startswith("---"):
        raise PresetError(f"{path} has no YAML front matter")
    data = card.data
    if data.library_name != "keras":
        raise PresetError(f"{path}: library_name is {data.library_name!r}, not 'keras'")
    missing = [t for t in REQUIRED_TAGS if t not in (data.tags or [])]
    if missing:
        raise PresetError(f"{path} lacks the tags {missing}")
    results = data.eval_results or []
    if len(results) != len(metrics or []) or any(
        r.metric_value != m["value"] or r.metric_type != m["metric"]
        for r, m in zip(results, metrics or [])
    ):
        raise PresetError(f"{path}: its model-index does not match metrics.json; "
                          "regenerate the card with save_preset")
    if metrics and metrics_table(metrics) not in card.text:
        raise PresetError(f"{path}: its metrics table does not match metrics.json; "
                          "regenerate the card with save_preset")
    return card
