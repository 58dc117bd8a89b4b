"""The ``augur-nas`` command line.

Every command is one row of ``COMMANDS`` (name -> ``Command``), defined in the module of its
group beside this file; adding a command is one module (or one function pair in an existing
one) plus one row here.

The error policy is kept here, in one place: every user error is an ``AugurError``, printed as
one paragraph on stderr with exit code 2 (argparse's usage errors are exit code 2 too); Ctrl-C
exits 130; a closed pipe (``augur-nas ... | head``) exits 0.
"""

from __future__ import annotations

import argparse
import sys

from .._errors import AugurError
from .._version import __version__
from . import analyze, calibrate, export, fit, measure, predict, search, split
from ._command import Command

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# the order is the order of `augur-nas --help`
COMMANDS: dict = {
    "analyze": analyze.ANALYZE,
    "space": analyze.SPACE,
    "predict": predict.PREDICT,
    "devices": predict.DEVICES,
    "fit": fit.FIT,
    "split": split.SPLIT,
    "export": export.EXPORT,
    "measure": measure.MEASURE,
    "profile": measure.PROFILE,
    "fit-residual": measure.FIT_RESIDUAL,
    "validate": measure.VALIDATE,
    "check": calibrate.CHECK,
    "calibrate": calibrate.CALIBRATE,
    "search": search.SEARCH,
}


# options a newcomer gives a command that does not take them: what to do instead
MISPLACED = {
    ("predict", "--threads"): "predict prices with a device profile, whose runtime settings (threads included) "
                              "are part of the profile; --threads is an option of measure and profile, and `augur-nas fit "
                              "MODEL --threads N` picks the machine's profile of N threads",
    ("analyze", "--device"): "analyze counts MACs, params and bytes without a device; use predict for a device",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="augur-nas", description="A vectorized cost oracle for hardware-aware NAS.")
    p.add_argument("--version", action="version", version=f"augur-nas {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    p.commands = {}
    for name, command in COMMANDS.items():
        kwargs = {"help": command.help}
        if command.description is not None:
            kwargs["description"] = command.description
        cp = sub.add_parser(name, **kwargs)
        command.add_arguments(cp)
        cp.set_defaults(fn=command.run)
        p.commands[name] = cp
    return p


def _parse(parser, argv):
    """Parse; an option the command does not take is reported by that command's parser (its usage,
    not the top-level one), with a hint where a newcomer's mistake is known."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        cp = parser.commands[args.command]
        hints = [MISPLACED[(args.command, e.split("=")[0])] for e in extra if (args.command, e.split("=")[0]) in MISPLACED]
        cp.error(f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(hints)})" if hints else ""))
    return args


def main(argv=None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    try:
        return args.fn(args)
    except AugurError as exc:
        sys.stderr.write(f"augur-nas {args.command}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"augur-nas {args.command}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
