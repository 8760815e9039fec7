"""Damaged, half-written and sharded checkpoints, on a tiny model (no training run).

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


def shard_files(run_dir):
    return sorted(p.name for p in run_dir.glob("checkpoint.[ab]*.safetensors"))


def test_a_large_state_is_written_in_shards_and_restored_exactly(tmp_path):
    """Shards keep every file of a resume state under a size (the repository's limit)."""
    path = tmp_path / loop.CHECKPOINT
    model = tiny_model(1)
    ckpt.save_checkpoint(path, model, {"epoch": 1}, max_shard_bytes=40)
    first = shard_files(tmp_path)
    assert len(first) > 1 and all(name.startswith("checkpoint.a-") for name in first)
    for name in first:  # tensor bytes per shard: at most the limit (no tensor exceeds it)
        from safetensors.numpy import load_file
        assert sum(t.nbytes for t in load_file(str(tmp_path / name)).values()) <= 40
    assert len(ckpt.load_file(str(path))) == 0  # the main file: progress and shard list

    restored = tiny_model(2)
    compile_tiny(restored)
    assert ckpt.load_checkpoint(path, restored) == {"epoch": 1}
    for a, b in zip(weights(model), weights(restored)):
        np.testing.assert_array_equal(a, b)  # bit-exact: the same float32 bytes
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))

    # The next save writes the other generation, then removes the first one.
    ckpt.save_checkpoint(path, model, {"epoch": 2}, max_shard_bytes=40)
    assert shard_files(tmp_path) == [name.replace(".a-", ".b-") for name in first]
    # A state that fits one file again: no shards left behind.
    ckpt.save_checkpoint(path, model, {"epoch": 3})
    assert shard_files(tmp_path) == [] and len(ckpt.load_file(str(path))) > 0
    assert ckpt.read_progress(path) == {"epoch": 3}

    # A one-file checkpoint (as runs before shards wrote them) rewritten in shards.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / loop.CHECKPOINT).write_bytes(path.read_bytes())
    ckpt.reshard(copy / loop.CHECKPOINT, max_shard_bytes=40)
    assert len(shard_files(copy)) > 1
    assert ckpt.max_difference(path, copy / loop.CHECKPOINT) == {
        "model": 0.0, "seed": 0.0, "optimizer": 0.0}
    assert ckpt.read_progress(copy / loop.CHECKPOINT) == {"epoch": 3}


@pytest.mark.parametrize("kind, problem", [("damaged", "is damaged"),
                                           ("missing", "is missing")])
def test_a_damaged_or_missing_shard_is_refused_by_name(tmp_path, kind, problem):
    path = tmp_path / loop.CHECKPOINT
    ckpt.save_checkpoint(path, tiny_model(1), {"epoch": 1}, max_shard_bytes=40)
    shard = tmp_path / shard_files(tmp_path)[-1]
    if kind == "damaged":
        data = bytearray(shard.read_bytes())
        data[-1] ^= 0xFF  # one flipped bit pattern in the tensor data: still parses
        shard.write_bytes(bytes(data))
    else:
        shard.unlink()
    model = tiny_model(2)
    compile_tiny(model)
    before = weights(model)
    with pytest.raises(ckpt.CheckpointError, match=f"{shard.name} {problem}"):
        ckpt.load_checkpoint(path, model)
    for a, b in zip(before, weights(model)):  # nothing assigned
        np.testing.assert_array_equal(a, b)


def test_a_save_killed_between_shards_and_main_file_keeps_the_old_state(tmp_path, monkeypatch):
    path = tmp_path / loop.CHECKPOINT
    old = tiny_model(1)
    ckpt.save_checkpoint(path, old, {"epoch": 1}, max_shard_bytes=40)
    old_shards = shard_files(tmp_path)

    def killed_replace(src, dst):
        raise KeyboardInterrupt  # the kill: new shards on disk, the main file not replaced

    monkeypatch.setattr(ckpt.os, "replace", killed_replace)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, tiny_model(5), {"epoch": 2}, max_shard_bytes=40)
    monkeypatch.undo()
    assert set(old_shards) < set(shard_files(tmp_path))  # both generations on disk

    resumed = tiny_model(2)
    compile_tiny(resumed)
    assert ckpt.load_checkpoint(path, resumed) == {"epoch": 1}
    for a, b in zip(weights(old), weights(resumed)):
        np.testing.assert_array_equal(a, b)
    # The next complete save overwrites the half-done generation and removes the old one.
    ckpt.save_checkpoint(path, resumed, {"epoch": 2}, max_shard_bytes=40)
    assert shard_files(tmp_path) == [n.replace(".a-", ".b-") for n in old_shards]
