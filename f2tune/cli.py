"""Command line entry point: `f2tune COMMAND ...`; each command lives in `f2tune.commands`.

Only dispatch and error printing live here: an `F2TuneError` becomes one `f2tune: error:` message
and its exit code (2; a run stopped by a signal, 128 + the signal), never a traceback; so do Ctrl-C
outside training (130) and a full, read-only or forbidden disk (2).
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings

from f2tune.commands import bench, check_data, convert, evaluate, export, fit, predict, push
from f2tune.errors import SIGNAL_STATUS, F2TuneError, RecipeError, RunStopped, user_message
from f2tune.log import on_rank_zero, setup_logging

COMMANDS = (fit, evaluate, predict, check_data, export, push, convert, bench)
"""Modules with `register(subcommands)`; the order is the order of `f2tune --help`."""

LIBRARY_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",  # raised inside Lightning against newer torch releases
    r"`is_gradient_checkpointing` is deprecated",  # peft reads transformers' old alias (5.24+) in get_peft_model
)
"""Warnings raised between the libraries, about their own code: nothing a user can act on."""


FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""File system errors met while writing (usually a checkpoint, hours in): what the user must fix
is the disk, which the message says; no traceback."""

NOT_PERMITTED = frozenset({errno.EACCES, errno.EPERM})
"""Permission errors (a run folder made by another user, a shared mount, an immutable file): what
the user must fix is who may write there, which the message says; no traceback."""


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `f2tune` parser, and each command's own (whose usage an error in its arguments shows)."""
    parser = argparse.ArgumentParser(prog="f2tune", description="Fine-tune Florence-2 from a YAML recipe.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser, commands.choices


def main(argv: list[str] | None = None) -> int:
    parser, command_parsers = build_parsers()
    # Overrides may come after flags (`fit r.yaml --resume a.b=1`): argparse leaves those unparsed.
    args, rest = parser.parse_known_args(argv)
    unknown_flags = [item for item in rest if item.startswith("-")]
    if unknown_flags or (rest and not hasattr(args, "overrides")):
        command_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown_flags or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    setup_logging()
    for message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    try:
        return args.run(args)
    except F2TuneError as err:
        # every process of a DDP run meets the same recipe problem (the validation interval is checked
        # after the launch): rank 0 says it; data problems may be one process's own, so each says its own
        code = err.exit_code
        if isinstance(err, (RecipeError, RunStopped)) and not on_rank_zero():
            return code
        print(f"f2tune: error: {user_message(err)}", file=sys.stderr)
        return code
    except KeyboardInterrupt:  # Ctrl-C while loading, reading data, generating...: nothing to keep
        print("f2tune: interrupted", file=sys.stderr)
        return SIGNAL_STATUS["Ctrl-C"]
    except OSError as err:
        message = disk_message(err)
        if message is None:
            raise
        print(f"f2tune: error: {message}", file=sys.stderr)
        return 2


def disk_message(err: OSError) -> str | None:
    """What to print for a full, read-only or forbidden disk: what, where, and what to do; None for
    any other OSError, a bug to see whole."""
    where = f" ({err.filename})" if err.filename else ""
    kept = (
        "What was written before is whole (checkpoints and output folders are written beside their target, "
        "then renamed)"
    )
    if err.errno in FULL_OR_READ_ONLY:
        return (
            f"{err.strerror}{where}. {kept}; free space or give another folder, then run the command again "
            "(a fit with --resume)."
        )
    if err.errno in NOT_PERMITTED and err.filename:  # not a file's (a signal, a socket): a bug to see whole
        return (
            f"{err.strerror}{where}: the user running f2tune may not use it. {kept}; give that user access to it "
            "and its folder (chmod, chown, or ask their owner) or give another folder, then run the command "
            "again (a fit with --resume)."
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
