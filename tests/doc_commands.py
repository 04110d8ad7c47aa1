"""The ``compsrt ...`` lines of the README and the docs, and their check against the CLI's own parser.

Used by ``tests/test_doc_commands.py`` (every documented line names a command, options and choices that
exist and are current) and by ``tests/readme_usage.py`` (the README's usage block, run end to end).
Lines are found generically, so rewritten docs are checked as they are: every fenced code block of a
Markdown file, lines joined at a trailing backslash, a leading ``$ `` dropped, ``&&`` / ``||`` / ``;`` / ``|``
chains split, a trailing ``# comment`` dropped, and each part that starts with ``compsrt`` (after
``VAR=value`` assignments) kept. Synopsis forms are understood: ``[--opt X]`` brackets are dropped, and
``a|b`` values are each checked against the option's choices (upper-case placeholders such as ``PATH``
or ``N`` are not values).
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^\s*(```|~~~)")
CHAIN = re.compile(r"\s(?:&&|\|\||;|\|)\s")
ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass
class DocCommand:
    path: Path
    line: int  # 1-based line of the code block where the command starts
    text: str  # the chain part as written, comment dropped
    argv: list[str]  # the words after ``compsrt``

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


def code_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced code block."""
    blocks, cur, start, fence = [], None, 0, ""
    for i, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if cur is None and m:
            cur, start, fence = [], i + 1, m.group(1)
        elif cur is not None and m and m.group(1) == fence:
            blocks.append((start, cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


def logical_lines(start: int, lines: list[str]) -> list[tuple[int, str]]:
    """Lines joined at a trailing backslash, with the number of their first line."""
    out, buf, first = [], "", None
    for i, line in enumerate(lines, start):
        if first is None:
            first = i
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((first, buf + line))
        buf, first = "", None
    if buf:
        out.append((first, buf))
    return out


def strip_comment(line: str) -> str:
    """``line`` up to a ``#`` that starts a shell comment (at the start or after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_words(text: str) -> list[str] | None:
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote in prose-like code: not a command line
        return None


def compsrt_argv(part: str) -> list[str] | None:
    """The words after ``compsrt`` when ``part`` runs compsrt (``VAR=x compsrt``, ``python -m compsrt``)."""
    words = split_words(part)
    if not words:
        return None
    while words and ASSIGN.match(words[0]):
        words = words[1:]
    if words and Path(words[0]).name == "compsrt":
        return words[1:]
    if len(words) > 2 and Path(words[0]).name.startswith("python") and words[1:3] == ["-m", "compsrt"]:
        return words[3:]
    return None


def chain_parts(line: str) -> list[str]:
    """A shell line's commands: ``$ `` prompt and comment dropped, split at ``&&``, ``||``, ``;`` and ``|``."""
    line = strip_comment(line.strip())
    line = line.removeprefix("$ ")
    return [p.strip() for p in CHAIN.split(line) if p.strip()]


def doc_commands(path: Path) -> list[DocCommand]:
    out = []
    for start, lines in code_blocks(path.read_text(encoding="utf-8")):
        for lineno, line in logical_lines(start, lines):
            for part in chain_parts(line):
                argv = compsrt_argv(part)
                if argv is not None:
                    out.append(DocCommand(path, lineno, part, argv))
    return out


def documented_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


# -- the check against the parser ---------------------------------------------------------------------------------
def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def is_placeholder(value: str) -> bool:
    """``PATH``, ``N``, ``<file>``, ``$OUT/x``, ``...``: stands for a value, is not one."""
    return (value.isupper() or value.startswith(("<", "$", "{")) or value in ("...", "…")
            or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(\.\w+)?", value)))


def option_values(action: argparse.Action, words: list[str]) -> list[str]:
    """The words ``action`` consumes from ``words`` (those after its option string), by its nargs."""
    nargs = action.nargs
    if nargs == 0:
        return []
    if nargs is None or nargs == "?":
        if words and not words[0].startswith("-"):
            return words[:1]
        return [] if nargs == "?" else words[:1]
    if isinstance(nargs, int):
        return words[:nargs]
    taken = []  # "+" / "*": up to the next option
    for w in words:
        if w.startswith("-") and not re.match(r"^-\d", w):
            break
        taken.append(w)
    return taken


def _choice_problems(action: argparse.Action, values: list[str]) -> list[str]:
    if action.choices is None:
        return []
    problems = []
    for value in values:
        for alt in value.split("|"):
            if not alt or is_placeholder(alt):
                continue
            try:
                v = action.type(alt) if action.type in (int, float) else alt
            except ValueError:
                v = alt
            if v not in action.choices:
                problems.append(f"{action.option_strings[0]} {alt}: not one of {list(action.choices)}")
    return problems


def check_argv(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Problems of one ``compsrt`` command line (words after ``compsrt``): unknown command, unknown or
    deprecated option (as the option's own action judges it: it is called with the words it would take),
    a value outside the option's choices. [] when it is current."""
    from compsrt.cli import args as cli_args
    from compsrt.errors import CompsrtError

    words = [w.strip("[]") for w in argv]
    words = [w for w in words if w]
    if not words or words[0] in ("--help", "-h", "--version"):
        return []
    commands = subparsers(parser)
    if words[0] not in commands:
        return [f"no command {words[0]!r} (commands: {', '.join(commands)})"]
    sub, rest = commands[words[0]], cli_args.join_old_tile(words[1:])  # as main() sees the words
    problems: list[str] = []
    said: list[str] = []
    old = cli_args.deprecated
    cli_args.deprecated = lambda was, new: said.append(f"{was} is deprecated; use {new}")
    try:
        i = 0
        while i < len(rest):
            word = rest[i]
            i += 1
            if not word.startswith("-") or re.match(r"^-\d", word) or word == "-":
                continue
            name, eq, inline = word.partition("=")
            action = sub._option_string_actions.get(name)
            if action is None:
                problems.append(f"{words[0]}: no option {name}")
                continue
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            values = [inline] if eq else option_values(action, rest[i:])
            i += 0 if eq else len(values)
            problems += [f"{words[0]}: {p}" for p in _choice_problems(action, values)]
            if any(is_placeholder(v) for v in values) or any("|" in v for v in values):
                values_for_action = None  # a synopsis: the action cannot judge a placeholder
            else:
                values_for_action = values
            if values_for_action is not None or action.nargs == 0 or isinstance(action, cli_args.DeprecatedAlias):
                n = action.nargs
                arg = (values_for_action or None) if n in (None, "?") else values_for_action
                if n in (None, "?") and arg:
                    arg = arg[0]
                try:
                    for v in (values_for_action or []) if callable(action.type) else []:
                        action.type(v)  # the value's type: where the old `--tile H W` says it is deprecated
                    action(sub, argparse.Namespace(), arg, name)
                except (argparse.ArgumentError, argparse.ArgumentTypeError, CompsrtError, TypeError, ValueError):
                    pass  # the value's own check is not this test's business (files need not exist)
    finally:
        cli_args.deprecated = old
    return problems + [f"{words[0]}: {s}" for s in said]
