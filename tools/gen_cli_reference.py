"""Write docs/cli.md, the command-line reference, from the `compsrt` argument parser itself.

The page is generated so that it cannot drift from the code: `tests/test_docs.py` regenerates it in memory and
fails when the committed page differs. Regenerate after changing any option:

    .venv/bin/python tools/gen_cli_reference.py            # writes docs/cli.md (any Python with compsrt's requirements)
    .venv/bin/python tools/gen_cli_reference.py --check    # exit 1 when docs/cli.md is stale

Only what the parser declares is used (flags, metavars, choices, help text with its %(default)s filled in), never
the terminal width, so the page is the same on every machine. Options hidden from --help (the previous release's
spellings) are left out, as --help leaves them out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "cli.md"
REGENERATE = ".venv/bin/python tools/gen_cli_reference.py"

HEADER = f"""# Command-line reference

Generated from the `compsrt` argument parser by `{REGENERATE}`; do not edit by hand (a test
fails when this page and the parser disagree). `compsrt COMMAND --help` prints the same text. What each stage does
and when to use an option: the stage pages ([calibration](calibration.md), [export](export.md), [runtime](runtime.md),
[serving](serving.md)).

Conventions shared by every command: sizes are W×H (`--size 320x180`, `--tile 64` or `--tile 96x64`); `--json`
prints JSON on stdout and `--out` names the file written; a `--scale` that contradicts a model file is refused; an
error a user can fix prints one line naming the problem and the fix and exits with status 2.
"""


def _parser() -> argparse.ArgumentParser:
    sys.path.insert(0, str(ROOT))
    from compsrt.cli import build_parser  # the package under this checkout, not an installed copy

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) per command, in the order `compsrt --help` lists them."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(choice.dest, choice.help or "", sub.choices[choice.dest]) for choice in sub._choices_actions]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _help(action: argparse.Action) -> str:
    if not action.help:
        return ""
    params = dict(vars(action), prog="compsrt")
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return action.help % params


def _spelling(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    if not action.option_strings:  # positional
        return f"`{action.metavar or action.dest}`"
    formatter = parser._get_formatter()
    args = formatter._format_args(action, action.dest.upper()) if action.nargs != 0 else ""
    return ", ".join(f"`{s} {args}`".replace(" `", "`") if args else f"`{s}`" for s in action.option_strings)


def _command(name: str, summary: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"## compsrt {name}", ""]
    if summary:
        lines += [_cell(summary), ""]
    if parser.description and _cell(parser.description) != _cell(summary):
        lines += [_cell(parser.description), ""]
    usage = " ".join(parser.format_usage().split())  # one line, independent of the terminal width
    lines += ["```", usage.removeprefix("usage: "), "```", ""]
    rows = [(_spelling(a, parser), _cell(_help(a))) for a in parser._actions
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]
    if rows:
        lines += ["| argument | meaning |", "|---|---|"]
        lines += [f"| {spelling} | {text} |" for spelling, text in rows]
        lines.append("")
    return "\n".join(lines)


def render() -> str:
    parser = _parser()
    commands = _subcommands(parser)
    index = ["| command | what it does |", "|---|---|"]
    index += [f"| [`{name}`](#compsrt-{name}) | {_cell(summary)} |" for name, summary, _ in commands]
    body = [_command(name, summary, sub) for name, summary, sub in commands]
    return "\n".join([HEADER, *index, "", *body]).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/cli.md differs from the parser")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"docs/cli.md is out of date; run: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
