"""MODEL_CARD.md's comparison with the baselines: generated from the runs' evaluation.json."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from training import comparison_table  # noqa: E402

sys.path.remove(ROOT)


def run_report(summary, recipe, seconds=3600.0, budget=False, parameters=1234):
    return {"dataset": "mnist_point_cloud", "split": "test", "backend": "jax",
            "hardware": "Some CPU, 1 CPUs (of 2)", "summary": summary,
            "training": {"recipe": recipe, "epochs_completed": 2, "stopped_at_step": 0,
                         "stopped_by_time_budget": budget, "train_seconds": seconds,
                         "trainable_parameters": parameters}}


def write_run(folder, report):
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text(json.dumps(report))
    (folder / "metrics.csv").write_text("epoch,loss\n0,1.0\n")


def test_model_card_comparison_is_current():
    card = os.path.join(ROOT, "MODEL_CARD.md")
    assert comparison_table.main(["--check", "--card", card]) == 0


def test_rows_put_the_zoo_model_first_and_read_every_column(tmp_path):
    accuracy = {"accuracy": 0.9, "mean_class_accuracy": 0.8912}
    stopped = run_report(accuracy, "a_baseline", seconds=5400.0, budget=True)
    stopped["training"]["stopped_at_step"] = 635  # in the third epoch when time ran out
    write_run(tmp_path / "baselines" / "a_baseline", stopped)
    write_run(tmp_path / "zoo" / "z_model", run_report(accuracy, "z_model", parameters=773114))
    write_run(tmp_path / "baselines" / "pcn", dict(
        run_report({"chamfer_distance": 0.012345678, "chamfer_distance_input_only": 0.01},
                   "pcn"), dataset="other"))
    lines = comparison_table.render_table(tmp_path).splitlines()
    assert lines[0].startswith("| dataset | model | kind | trainable parameters |")
    assert lines[2] == ("| mnist_point_cloud test | z_model | zoo | 773,114 | accuracy 90.00% "
                        "(mean per class 89.12%) | 1.00 h | 2 | jax | Some CPU, 1 CPUs (of 2) |")
    assert lines[3].startswith("| mnist_point_cloud test | a_baseline | baseline | 1,234 |")
    assert "| 1.50 h, stopped by the time budget | 2 + 635 steps |" in lines[3]
    assert lines[4].startswith("| other test | pcn | baseline | 1,234 | Chamfer 0.01235 (lower "
                               "is better; the partial input alone: 0.01000) |")
    assert len(lines) == 5


def test_parameters_not_recorded_come_from_the_recipe(tmp_path):
    report = run_report({"accuracy": 0.5, "mean_class_accuracy": 0.5}, "pointnet_mnist",
                        parameters=None)
    write_run(tmp_path / "baselines" / "pointnet_mnist", report)
    from ddeq_keras.models import create_model

    variables = create_model("pointnet_mnist").trainable_variables
    expected = sum(int(np.prod(v.shape)) for v in variables)
    assert f"| {expected:,} |" in comparison_table.render_table(tmp_path)


def test_no_runs_and_unfinished_runs_are_named(tmp_path):
    assert comparison_table.render_table(tmp_path) == comparison_table.NO_RUNS
    write_run(tmp_path / "baselines" / "broken", {"summary": {}, "dataset": "d"})
    with pytest.raises(ValueError, match=r"broken/evaluation\.json: not a finished run"):
        comparison_table.render_table(tmp_path)


def test_record_copies_a_finished_run_and_writes_the_card(tmp_path):
    run_dir, docs, card = tmp_path / "runs" / "x", tmp_path / "docs", tmp_path / "CARD.md"
    card.write_text(f"# Card\n\n{comparison_table.BEGIN}\n\nold\n\n{comparison_table.END}\n")
    args = ["--docs", str(docs), "--card", str(card)]
    with pytest.raises(ValueError, match="no evaluation.json: the run has not finished"):
        comparison_table.main([*args, "--record", str(tmp_path / "runs")])
    write_run(run_dir, run_report({"accuracy": 0.5, "mean_class_accuracy": 0.5}, "my_recipe"))
    assert comparison_table.main([*args, "--check"]) == 1  # the table is stale
    assert comparison_table.main([*args, "--record", str(run_dir)]) == 0
    assert sorted(p.name for p in (docs / "baselines" / "my_recipe").iterdir()) == [
        "evaluation.json", "metrics.csv"]
    assert "| my_recipe | baseline |" in card.read_text() and "old" not in card.read_text()
    assert comparison_table.main([*args, "--check"]) == 0
