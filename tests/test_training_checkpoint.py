"""Damaged and half-written checkpoints, on a tiny model (no training run).

`training.checkpoint` writes a run's resume state to ``.checkpoint.safetensors.tmp-<pid>``
and renames it over ``checkpoint.safetensors``; `TrainingLoop.start` resumes from
``checkpoint.safetensors`` only. A damaged checkpoint must be refused with its
name (``run_main`` turns the `CheckpointError` into ``error: ...``) before any
variable is assigned; a leftover temporary file must never be resumed from.
"""

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("safetensors")

import keras  # noqa: E402

from training import checkpoint as ckpt  # noqa: E402
from training import loop, session  # noqa: E402

CONFIG = {"recipe": {"name": "tiny"}}


def compile_tiny(model):
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)


def tiny_model(seed):
    """Dense + Dropout (a seed generator), compiled with a built Adam."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                              keras.layers.Dropout(0.5, seed=seed)])
    compile_tiny(model)
    return model


def tiny_loop(run_dir, model, resume=True):
    phases = loop.Phases(of_epoch=lambda epoch: "train",
                         enter=lambda model, phase: compile_tiny(model))
    training_loop = loop.TrainingLoop(
        model, SimpleNamespace(epochs=3), SimpleNamespace(resume=resume, time_budget=None), run_dir=run_dir,
        source=None, steps_per_epoch=1, config=CONFIG, phases=phases)
    # It builds the compiled loss from a batch of the data set; the tiny model has none.
    training_loop._build_compiled_metrics = lambda: None
    return training_loop


def weights(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


def good_checkpoint(run_dir):
    """Writes a checkpoint of a tiny model at epoch 1 (as the loop does); its weights."""
    model = tiny_model(1)
    saver = tiny_loop(run_dir, model, resume=False)
    saver.start()
    saver.save(1, 0, 2.0)
    return weights(model)


def damage(data, kind):
    header = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + header])
    if kind == "truncated":  # a copy cut in the middle
        return data[:len(data) // 2]
    if kind == "tail_cut":  # header intact, tensor data short by 4 bytes
        return data[:-4]
    if kind == "garbage":
        return b"\x13\x37garbage" * 50
    if kind == "empty":
        return b""
    if kind == "bad_metadata":  # valid safetensors, the progress JSON damaged
        meta["__metadata__"]["progress"] = "{not json"
    if kind == "missing_tensor":  # valid safetensors, one variable's tensor gone
        del meta["model/00001"]
        # Fix up the offsets: drop the bias bytes from the data (it is the last model
        # tensor, but not the last in the file; keep the others where they are).
        begin, end = json.loads(data[8:8 + header])["model/00001"]["data_offsets"]
        body = data[8 + header:]
        body = body[:begin] + body[end:]
        for key, info in meta.items():
            if key != "__metadata__" and info["data_offsets"][0] >= end:
                info["data_offsets"] = [o - (end - begin) for o in info["data_offsets"]]
        text = json.dumps(meta).encode()
        return len(text).to_bytes(8, "little") + text + body
    text = json.dumps(meta).encode()
    return len(text).to_bytes(8, "little") + text + data[8 + header:]


@pytest.mark.parametrize("kind, problem", [
    ("truncated", "not a readable checkpoint"),
    ("tail_cut", "not a readable checkpoint"),
    ("garbage", "not a readable checkpoint"),
    ("empty", "not a readable checkpoint"),
    ("bad_metadata", "metadata is not valid JSON"),
    ("missing_tensor", r"tensor model/00001 .* is missing"),
])
def test_damaged_checkpoint_is_refused_by_name(tmp_path, kind, problem):
    good_checkpoint(tmp_path)
    path = tmp_path / loop.CHECKPOINT
    path.write_bytes(damage(path.read_bytes(), kind))
    model = tiny_model(2)
    before = weights(model)
    with pytest.raises(ckpt.CheckpointError, match=problem) as info:
        ckpt.load_checkpoint(path, model)
    assert str(path) in str(info.value)
    for a, b in zip(before, weights(model)):  # nothing assigned
        np.testing.assert_array_equal(a, b)

    # What --resume does with it: the run stops with the file's name, nothing loaded.
    parser = argparse.ArgumentParser()
    parser.add_argument("--resume", action="store_true")
    with pytest.raises(SystemExit) as exit_info:
        session.run_main(parser, lambda args: tiny_loop(tmp_path, model).start(), ["--resume"])
    message = str(exit_info.value.code)
    assert message.startswith(f"error: {path}"), message
    for a, b in zip(before, weights(model)):
        np.testing.assert_array_equal(a, b)


def test_resume_ignores_a_half_written_temporary_file(tmp_path, monkeypatch):
    saved = good_checkpoint(tmp_path)
    path = tmp_path / loop.CHECKPOINT
    good_bytes = path.read_bytes()

    # A later save killed while writing: half a file under the temporary name.
    model = tiny_model(3)
    writer = tiny_loop(tmp_path, model, resume=False)
    writer.start()
    real_save_file = ckpt.save_file

    def killed_save_file(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as handle:
            handle.truncate(len(good_bytes) // 2)
        raise KeyboardInterrupt  # stands in for the kill: os.replace never runs

    monkeypatch.setattr(ckpt, "save_file", killed_save_file)
    with pytest.raises(KeyboardInterrupt):
        writer.save(2, 0, 4.0)
    monkeypatch.undo()
    leftovers = sorted(tmp_path.glob(f".{loop.CHECKPOINT}.tmp-*"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size < len(good_bytes)
    assert path.read_bytes() == good_bytes  # the complete checkpoint was kept
    # And one of an earlier process, with garbage in it.
    (tmp_path / f".{loop.CHECKPOINT}.tmp-999999").write_bytes(b"\x00garbage" * 30)

    resumed = tiny_model(4)
    progress = tiny_loop(tmp_path, resumed).start()
    assert (progress["epoch"], progress["step"], progress["train_seconds"]) == (1, 0, 2.0)
    for a, b in zip(saved, weights(resumed)):
        np.testing.assert_array_equal(a, b)

    # The run folder check of a resumed run removes the leftovers, keeps the checkpoint.
    session.check_run_dir(tmp_path, resume=True)
    assert not list(tmp_path.glob(f".{loop.CHECKPOINT}.tmp-*"))
    assert path.read_bytes() == good_bytes
