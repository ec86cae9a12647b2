"""`f2tune push DIR --repo user/name [--private] [--revision BRANCH]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "push",
        help="upload an export folder to the Hugging Face Hub",
        description="Upload an export folder to the Hub (token: HF_TOKEN or `hf auth login`; endpoint: HF_ENDPOINT).",
    )
    parser.add_argument("folder", type=Path, help="an export folder (f2tune export, or a run's export/)")
    parser.add_argument("--repo", required=True, help="Hub repo id user/name; created if it does not exist")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", help="branch to upload to (created from main if needed)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from f2tune.hub.push import push_folder
    from f2tune.log import say

    url = push_folder(args.folder, args.repo, private=args.private, revision=args.revision)
    say(f"pushed {args.folder} to {args.repo}: {url}")
    return 0
