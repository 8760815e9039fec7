"""Publish a preset folder to the Hugging Face Hub.

Usage (from the repository root):

    python -m training.publish FOLDER owner/name [--revision BRANCH] [--private]
                               [--message "commit title"]

The folder (written by `save_preset` / `task.save_to_preset`) is validated first:
all files present, the weights load, the card parses, `metrics.json` present. The
token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT picks another Hub.
Prints the commit URL; exits 2 with a message if the folder or the upload fails.
"""

import argparse
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.publish",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the preset folder")
    parser.add_argument("repo_id", help="the Hub model repo, owner/name")
    parser.add_argument("--revision", help="branch to commit to (created if needed)")
    parser.add_argument("--private", action="store_true",
                        help="create the repo private (an existing repo keeps its visibility)")
    parser.add_argument("--message", help="commit title (default: preset, class and metrics)")
    return parser.parse_args(argv)


def main(argv=None):
    """Runs the command; returns the exit status."""
    args = parse_args(argv)
    from huggingface_hub.errors import HfHubHTTPError

    from ddeq_keras.presets import PresetError, publish

    try:
        commit = publish(args.folder, args.repo_id, revision=args.revision,
                         private=args.private, commit_message=args.message)
    except (PresetError, HfHubHTTPError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Published {args.folder} to {args.repo_id}: {commit}")
    print(f"commit sha (for a registry entry): {getattr(commit, 'oid', commit)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
