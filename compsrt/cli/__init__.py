"""The ``compsrt`` command: a thin layer over the library, one subcommand per pipeline stage.

The orchestrator layer: every stage's subcommands live in ``compsrt/cli/<stage>.py`` with a
``register(subparsers)`` function (:data:`STAGE_CLIS` lists them) and call library functions; nothing
below imports them. ``--help`` lists the commands in :data:`COMMAND_ORDER`, the pipeline's. The shared
option vocabulary is :mod:`compsrt.cli.args`. Errors a user can fix arrive as :class:`CompsrtError` (or
an argparse error) and are printed on one line (exit status 2). Nothing heavy (torch, onnx, TensorRT)
is imported until a command runs, so ``--help`` and a missing-file error are instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .args import Parser, join_negative_values
from ..errors import CompsrtError

STAGE_CLIS: tuple[str, ...] = ("compsrt.cli.evaluation", "compsrt.cli.runtime", "compsrt.cli.serving", "compsrt.cli.pipeline",
                               "compsrt.cli.export", "compsrt.cli.calibration")
COMMAND_ORDER = ("calibrate", "pack", "eval", "export", "inspect", "export-check", "export-parity", "build", "upscale",
                 "profile", "triton-repo", "serve")  # then any other command in registration order, then:
COMMAND_LAST = ("selftest", "pipeline")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="compsrt", description="Compress SwinIR-light and deploy it with TensorRT. "
                    "`compsrt COMMAND --help` lists a command's options and their defaults.")
    parser.add_argument("--version", action="version", version=f"compsrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (in pipeline order)")
    for module in STAGE_CLIS:
        importlib.import_module(module).register(sub)
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    rank.update({name: len(COMMAND_ORDER) + 1000 + i for i, name in enumerate(COMMAND_LAST)})
    shown = sub._choices_actions  # the help listing; argparse keeps it in registration order
    registered = {a.dest: i for i, a in enumerate(shown)}
    shown.sort(key=lambda a: rank.get(a.dest, len(COMMAND_ORDER) + registered[a.dest]))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = join_negative_values(list(sys.argv[1:] if argv is None else argv))
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help/--version: 0, raised on; a usage error (already printed): 2
        if exc.code:
            return int(exc.code)
        raise
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except CompsrtError as exc:
        print(f"compsrt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"compsrt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
