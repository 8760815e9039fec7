"""The top-level MODEL_CARD.md: its metrics table is generated from zoo/*/metrics.json."""

import json
import os
import sys

import pytest

from ddeq_keras.presets import PresetError
from preset_helpers import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from training import model_card_table  # noqa: E402

sys.path.remove(ROOT)


def test_model_card_is_current():
    card = os.path.join(ROOT, "MODEL_CARD.md")
    with open(card, encoding="utf-8") as f:
        text = f.read()
    expected = model_card_table.update_card(text, model_card_table.render_table(
        os.path.join(ROOT, "zoo")))
    assert text == expected, "MODEL_CARD.md is stale: run python -m training.model_card_table"
    assert model_card_table.main(["--check"]) == 0


def test_table_lists_every_preset_and_says_when_there_are_none(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    assert model_card_table.render_table(zoo) == model_card_table.NO_PRESETS
    for name, value in [("b_model", 0.5), ("a_model", 0.25)]:
        (zoo / name).mkdir()
        (zoo / name / "metrics.json").write_text(json.dumps(metrics(value, backend="torch")))
    (zoo / "no_metrics_yet").mkdir()
    table = model_card_table.render_table(zoo).splitlines()
    assert table[0] == "| preset | dataset | split | metric | value | backend | hardware | date |"
    assert table[2].startswith("| a_model | synthetic_rings | test | accuracy | 0.25 | torch |")
    assert table[3].startswith("| b_model | synthetic_rings | test | accuracy | 0.5 | torch |")
    assert len(table) == 4


def test_check_mode_reports_a_stale_card_and_writing_fixes_it(tmp_path, capsys):
    zoo, card = tmp_path / "zoo", tmp_path / "MODEL_CARD.md"
    (zoo / "m").mkdir(parents=True)
    (zoo / "m" / "metrics.json").write_text(json.dumps(metrics(0.5)))
    card.write_text(f"# Card\n\n{model_card_table.BEGIN}\n\nold\n\n{model_card_table.END}\n")
    args = ["--zoo", str(zoo), "--card", str(card)]
    assert model_card_table.main([*args, "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert model_card_table.main(args) == 0
    assert model_card_table.main([*args, "--check"]) == 0
    assert "| m | synthetic_rings |" in card.read_text() and "old" not in card.read_text()


def test_malformed_metrics_and_missing_markers_are_named(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text(json.dumps([{"value": 1}]))
    with pytest.raises(PresetError, match=r"bad/metrics\.json\[0\]: missing keys"):
        model_card_table.render_table(tmp_path)
    with pytest.raises(PresetError, match="lacks the markers"):
        model_card_table.update_card("# no markers\n", "table")
