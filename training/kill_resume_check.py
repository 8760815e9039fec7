"""Kill a training run with SIGKILL at random moments; check that --resume loses nothing.

`python -m training.kill_resume_check --kills 10 --work-dir DIR -- TRAIN_ARGS...`
runs ``python -m training.train TRAIN_ARGS`` (``--run-dir`` is added; ``--module
training.finetune`` checks fine-tuning runs) twice:

1. uninterrupted, in ``DIR/reference`` (or ``--reference RUN_DIR``, a finished
   run of the same arguments);
2. in ``DIR/killed``: each launch is killed (SIGKILL) at a random moment once a
   checkpoint exists: when the checkpoint on disk reaches a position (epoch,
   step) drawn at random among those still to come, plus a random delay of at
   most ``--max-delay`` seconds (default: the reference's median interval
   between checkpoints), so kills land in steps, checkpoint writes, monitoring
   and the final evaluation alike, and every launch makes progress. It is then
   launched again with ``--resume``, until ``--kills`` kills are done; the last
   launch runs to the end.

It checks that every resumed launch starts from the checkpoint that was on disk
after the kill (the last complete one: its epoch and step), that the progress
never goes back, that ``metrics.csv`` has each epoch once, and compares the final
checkpoint (weights, random-generator states, optimizer state) with the
reference. It prints the counts and the largest differences as JSON and exits
non-zero if a check fails. On CPU the weights are expected to be bit-identical
(``--tolerance 0``): the same compiled steps run on the same batches in the same
order from the same restored state.

Example (from the repository root)::

    python -m training.kill_resume_check --kills 10 --work-dir /tmp/kill -- \\
        --recipe ddeq_mnist --data-dir /tmp/tfds --manual-dir ../shared/data \\
        --steps-per-epoch 6 --eval-limit 16 --no-plots --verbose 0 \\
        --set epochs=4 --set checkpoint_every=1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from training import checkpoint as ckpt
from training.loop import CHECKPOINT

RESUMING = re.compile(r"Resuming at epoch (\d+), step (\d+)")
POLL = 0.005  # seconds


def _position(path):
    """(epoch, step) of the checkpoint on disk, or None."""
    try:
        progress = ckpt.read_progress(path)
    except (FileNotFoundError, ckpt.CheckpointError):
        return None
    return progress["epoch"], progress["step"]


def save_positions(progress):
    """Every (epoch, step) a full run checkpoints at, in order (from any checkpoint's
    progress: the recipe's epochs and checkpoint_every, the steps per epoch)."""
    epochs, every = progress["recipe"]["epochs"], progress["recipe"]["checkpoint_every"]
    steps = progress["steps_per_epoch"]
    positions = []
    for epoch in range(epochs):
        positions += [(epoch, s) for s in range(1, steps + 1) if every and s % every == 0]
        positions.append((epoch + 1, 0))
    return positions


def _environment(work_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    # JAX compiles the same steps in every launch: let them share the executables
    # (the same compiled code, so the numbers do not change; only time is saved).
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(work_dir) / "jax_cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return env


def _launch(train_args, run_dir, resume, log, env, module="training.train"):
    command = [sys.executable, "-m", module, *train_args, "--run-dir", str(run_dir)]
    handle = open(log, "w")
    process = subprocess.Popen(command + (["--resume"] if resume else []), stdout=handle,
                               stderr=subprocess.STDOUT, env=env)
    return process, handle


def run_reference(train_args, run_dir, env, module):
    """The uninterrupted run; returns the median interval between its checkpoints."""
    log = Path(run_dir).with_suffix(".log")
    process, handle = _launch(train_args, run_dir, False, log, env, module)
    path, seen, times = Path(run_dir) / CHECKPOINT, [], []
    while process.poll() is None:
        position = _position(path)
        if position is not None and (not seen or position != seen[-1]):
            seen.append(position)
            times.append(time.monotonic())
        time.sleep(POLL)
    handle.close()
    if process.returncode:
        raise SystemExit(f"the reference run failed (exit {process.returncode}); see {log}")
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    return gaps[len(gaps) // 2] if gaps else 0.5


def _pick_target(positions, current, kills_left, rng):
    """A random checkpoint position to kill at, or None when none is left.

    Drawn among the next ``1/kills_left`` of the positions still to come, so that
    the kills spread over the whole run and each later one still finds some.
    """
    later = [p for p in positions if current is None or p > current]
    return rng.choice(later[:max(1, len(later) // kills_left)]) if later else None


def killed_run(train_args, run_dir, kills, positions, max_delay, rng, env, module):
    """Launches, kills and resumes; returns the record of what happened.

    Each launch but the last is killed once the checkpoint on disk has reached a
    position drawn at random among those still to come (and then after a random
    delay of at most ``max_delay``): the kill lands in a step, a checkpoint
    write, the monitoring or the final evaluation, and every launch makes
    progress.
    """
    path = Path(run_dir) / CHECKPOINT
    record = {"launches": 0, "kills": [], "resumes": [], "problems": []}
    while True:
        resume = record["launches"] > 0
        log = Path(run_dir).parent / f"killed-{record['launches']}.log"
        expected = record["kills"][-1] if resume else None  # where it must continue
        current = _position(path)
        process, handle = _launch(train_args, run_dir, resume, log, env, module)
        record["launches"] += 1
        target = None
        if len(record["kills"]) < kills:
            target = _pick_target(positions, current, kills - len(record["kills"]), rng)
            if target is None:
                record["problems"].append("no checkpoint position left to kill at: use more "
                                          "steps or a smaller --max-delay")
        if target is not None:
            while process.poll() is None and (_position(path) or (-1, 0)) < target:
                time.sleep(POLL)
            delay = rng.uniform(0.0, max_delay)
            deadline = time.monotonic() + delay
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(POLL)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                epoch, step = _position(path)  # the last complete checkpoint
                half_written = any(Path(run_dir).glob(f".{CHECKPOINT}.tmp-*"))
                record["kills"].append({"target": list(target), "after_s": round(delay, 3),
                                        "epoch": epoch, "step": step,
                                        "during_checkpoint_write": half_written})
            else:
                record["problems"].append(f"launch {record['launches']} finished before its "
                                          "kill: use more steps or a smaller --max-delay")
        else:
            process.wait()
        handle.close()
        if resume:
            found = RESUMING.search(log.read_text())
            got = None if found is None else (int(found[1]) - 1, int(found[2]))
            if got != (expected["epoch"], expected["step"]):
                record["problems"].append(f"launch {record['launches']} resumed at {got}, "
                                          f"the checkpoint on disk was {expected}")
            else:
                record["resumes"].append({"epoch": got[0], "step": got[1]})
        if process.returncode not in (0, -signal.SIGKILL):
            record["problems"].append(f"launch {record['launches']} failed (exit "
                                      f"{process.returncode}); see {log}")
            return record
        if process.returncode == 0:
            return record


def check(train_args, work_dir, kills, *, reference=None, max_delay=None, seed=0,
          tolerance=0.0, module="training.train"):
    """Runs the whole check; returns the JSON-ready report (``report["passed"]``)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    env = _environment(work_dir)
    if reference is None:
        reference = work_dir / "reference"
        interval = run_reference(train_args, reference, env, module)
        max_delay = interval if max_delay is None else max_delay
    max_delay = 0.2 if max_delay is None else max_delay
    positions = save_positions(ckpt.read_progress(Path(reference) / CHECKPOINT))
    if len(positions) < kills:
        raise SystemExit(f"a run of these arguments checkpoints {len(positions)} times: "
                         f"too few for {kills} kills (more steps, checkpoint_every=1).")
    run_dir = work_dir / "killed"
    if (run_dir / CHECKPOINT).exists():
        raise SystemExit(f"{run_dir} holds a run already: use a fresh --work-dir.")
    record = killed_run(train_args, run_dir, kills, positions, max_delay,
                        random.Random(seed), env, module)
    steps = [(k["epoch"], k["step"]) for k in record["kills"]]
    if steps != sorted(steps):
        record["problems"].append(f"progress went back between kills: {steps}")
    report = {"kills": len(record["kills"]), "resumes": len(record["resumes"]),
              "launches": record["launches"], "max_delay_s": round(max_delay, 3),
              "kills_during_checkpoint_write": sum(k["during_checkpoint_write"]
                                                   for k in record["kills"]),
              "kill_points": record["kills"]}
    final = run_dir / CHECKPOINT
    if final.exists() and not record["problems"]:
        report["max_weight_difference"] = ckpt.max_difference(Path(reference) / CHECKPOINT,
                                                              final)
        if max(report["max_weight_difference"].values()) > tolerance:
            record["problems"].append(f"final state differs from the reference by more "
                                      f"than {tolerance}")
        import csv

        with open(run_dir / "metrics.csv", newline="") as handle:
            epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
        if epochs != list(range(ckpt.read_progress(final)["epoch"])):
            record["problems"].append(f"metrics.csv has epochs {epochs}")
        if not (run_dir / "preset" / "model.safetensors").exists():
            record["problems"].append("no preset was written")
    report["problems"] = record["problems"]
    report["passed"] = len(record["kills"]) == kills and not record["problems"]
    return report


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="python -m training.kill_resume_check [options] -- TRAIN_ARGS")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--reference", help="a finished run folder of the same TRAIN_ARGS "
                                            "(default: run one in WORK_DIR/reference)")
    parser.add_argument("--max-delay", type=float,
                        help="seconds: largest random delay of a kill after the "
                             "checkpoint position drawn for it")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--module", default="training.train",
                        help="the training entry point (training.finetune works too)")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="largest accepted absolute difference from the reference")
    args = parser.parse_args(argv[:split])
    if not argv[split + 1:]:
        parser.error("pass the arguments of training.train after --")
    report = check(argv[split + 1:], args.work_dir, args.kills, reference=args.reference,
                   max_delay=args.max_delay, seed=args.seed, tolerance=args.tolerance,
                   module=args.module)
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
