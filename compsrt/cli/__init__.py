"""The ``compsrt`` command: a thin layer over the library, one subcommand per pipeline stage.

The orchestrator layer: every stage's subcommands live in ``compsrt/cli/<stage>.py`` with a
``register(subparsers)`` function (:data:`STAGE_CLIS` lists them, in help order) and call library functions;
nothing below imports them. Errors a user can fix arrive as :class:`CompsrtError` and
are printed on one line (exit status 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import CompsrtError

STAGE_CLIS: tuple[str, ...] = ("compsrt.cli.evaluation", "compsrt.cli.runtime", "compsrt.cli.serving", "compsrt.cli.pipeline",
                               "compsrt.cli.export", "compsrt.cli.calibration")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compsrt", description="Compress SwinIR-light and deploy it with TensorRT.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in STAGE_CLIS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
