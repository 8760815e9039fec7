"""Prepare a ddeq_keras point-cloud builder from local files and summarise it.

Usage (from the repository root):

    python training/prepare_data.py mnist_point_cloud --manual_dir ../shared/data \
        --data_dir /tmp/tfds
    python training/prepare_data.py modelnet40/hdf5 --manual_dir ../shared/data \
        --data_dir /tmp/tfds
    python training/prepare_data.py point_set_folder --manual_dir ~/my_scans \
        --data_dir ~/my_scans_tfds --option num_dims=2 --option nan_policy=drop

Prints the preparation time, the files skipped (with their reasons), example
counts per split and per class, and points per example (min / mean / max) as
JSON (also to `--output FILE`). `--option` values derive a config named after
a hash of all its options (e.g. `default_1f0c2d9a4e`), so preparing again with
other options prepares afresh instead of returning the old data; the skipped
files are also in `preparation_report.json` beside the prepared data.
"""

from __future__ import annotations

import argparse
import json
import os
import logging
import sys
import time


def _parse_option(text):
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option expects key=value, got {text!r}")
    try:
        value = json.loads(value)
    except ValueError:
        pass  # a plain string
    return key, value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="builder[/config], e.g. modelnet40/hdf5")
    parser.add_argument("--manual_dir", required=True, help="folder holding the source files")
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir for the prepared data")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        type=_parse_option,
        help="config option key=value (JSON value), e.g. max_points=500; repeatable",
    )
    parser.add_argument("--no_summary", action="store_true", help="skip the counts")
    parser.add_argument("--output", default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import ddeq_keras.datasets as dd

    start = time.perf_counter()
    builder = dd.prepare(args.name, data_dir=args.data_dir, manual_dir=args.manual_dir,
                         options=dict(args.option))
    seconds = time.perf_counter() - start
    config_name = builder.builder_config.name if builder.builder_config else None
    metadata = builder.info.metadata or {}
    report = {
        "builder": f"{builder.name}/{config_name}" if config_name else builder.name,
        "data_dir": str(builder.data_dir),
        "prepare_seconds": round(seconds, 1),
        "skipped": metadata.get("skipped", {}),
        "skipped_files": metadata.get("skipped_files", {}),
        "report": os.path.join(builder.data_dir, "preparation_report.json"),
    }
    if not args.no_summary:
        report["splits"] = dd.summarize(builder)
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
