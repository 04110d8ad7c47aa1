"""The command line's one vocabulary, shared by every subcommand (orchestrator layer, no heavy imports).

* sizes are typed and printed W x H: ``--size 320x180``, ``--tile 64`` (square) or ``--tile 96x64``;
  inside, tiles stay (h, w) as in the sidecars;
* ``--json`` is a flag printing JSON on stdout; files are named with ``--out``;
* ``--plugins python|none|PATH``, ``--device auto|cpu|cuda[:i]``, ``--data`` (the data root) and
  ``--benchmarks`` (the benchmark sets) mean the same in every command;
* an input file that does not exist is refused while the arguments are parsed, before torch or
  TensorRT are imported, and every argparse error is one line (exit 2).

Old spellings that the docs used (``--tile H W``, ``profile --json PATH``, ``export-check --plugin``,
``--data-root``) still work for one release and print a deprecation line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..artifacts import check_scale  # noqa: F401 - the commands' one --scale check
from ..errors import CompsrtError

DEVICE_HELP = "torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N (default %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at ``--help`` instead of printing the whole usage."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def parse_known_args(self, args=None, namespace=None):  # argparse API: every parse goes through here
        return super().parse_known_args(join_old_tile(list(sys.argv[1:] if args is None else args)), namespace)


def join_negative_values(argv: list[str]) -> list[str]:
    """``--size -8x8`` -> ``--size=-8x8``: argparse takes ``-8x8`` for an option and says only
    "expected one argument"; joined, the option's own check names the problem."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and "=" not in a and i + 1 < len(argv) and re.match(r"^-\d", argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def deprecated(old: str, new: str) -> None:
    print(f"compsrt: warning: {old} is deprecated and will be removed in the next release; use {new}", file=sys.stderr)


# -- sizes -------------------------------------------------------------------------------------------------
def parse_size(text: str, allow_square: bool = False) -> tuple[int, int]:
    """``"WxH"`` (or ``"N"`` when ``allow_square``) -> (w, h), positive."""
    t = str(text).lower().replace("×", "x")
    m = re.fullmatch(r"(-?\d+)x(-?\d+)", t) or (re.fullmatch(r"(-?\d+)", t) if allow_square else None)
    if not m:
        form = "N or WxH, e.g. 64 or 96x64" if allow_square else "WxH, e.g. 320x180"
        raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}")
    w = int(m.group(1))
    h = int(m.group(2)) if m.lastindex == 2 else w
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return w, h


def size_arg(text: str) -> tuple[int, int]:
    return parse_size(text)


def parse_tile(text: str) -> tuple[int, int]:
    """``"64"`` or ``"96x64"`` (W x H) -> (h, w), the order of the sidecars and the tiler."""
    w, h = parse_size(text, allow_square=True)
    return h, w


def tile_type(whole: bool = False, square: bool = False):
    """The one ``--tile`` type of every command: ``N``, ``WxH`` or the old ``H W`` (one argument, see
    :func:`join_old_tile`; prints a deprecation line) -> (h, w); ``0`` = the whole image when ``whole``;
    one int N when ``square``. Tiles above the model's limit (:mod:`compsrt.models.limits`) are refused."""
    from ..models.limits import tile_limit_error

    def parse(text: str):
        t = str(text).strip()
        if whole and t == "0":
            return 0
        parts = t.split()
        if len(parts) == 2 and all(v.isdigit() for v in parts):
            tile = (int(parts[0]), int(parts[1]))
            if min(tile) <= 0:
                raise argparse.ArgumentTypeError(f"sizes must be positive, got {t!r}")
            deprecated(f"--tile {parts[0]} {parts[1]} (H W)", f"--tile {fmt_tile(tile)} (W x H)")
        else:
            tile = parse_tile(t)
        if square and tile[0] != tile[1]:
            raise argparse.ArgumentTypeError(f"expected one square size N here, got {text!r}")
        too_large = tile_limit_error(tile)
        if too_large:
            raise argparse.ArgumentTypeError(too_large)
        return tile[0] if square else tile

    return parse


def add_tile_arg(p, help: str, *, default=None, required: bool = False, whole: bool = False, square: bool = False):
    """``--tile`` as every command spells it (see :func:`tile_type`)."""
    return p.add_argument("--tile", type=tile_type(whole, square), default=default, required=required,
                          metavar="N" if square else "N|WxH",
                          help=help + "; the old `--tile H W` still works for one release")


def fmt_tile(tile) -> str:
    """(h, w) -> ``"WxH"``."""
    h, w = (tile, tile) if isinstance(tile, int) else tile
    return f"{w}x{h}"


def join_old_tile(argv: list[str]) -> list[str]:
    """``--tile 16 24`` (the old H W) -> ``--tile=16 24``: one argument for :func:`tile_type`, so ``--tile``
    never swallows a positional argument (``upscale --tile 64 in.png out.png``)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--tile" and i + 2 < len(argv) and argv[i + 1].isdigit() and argv[i + 2].isdigit():
            out.append(f"--tile={argv[i + 1]} {argv[i + 2]}")
            i += 3
        else:
            out.append(a)
            i += 1
    return out


# -- files -----------------------------------------------------------------------------------------------------
class MissingFile(CompsrtError, argparse.ArgumentTypeError):
    """A named input that does not exist: an argparse type error while parsing, a CompsrtError after."""


def existing(what: str, hint: str = "", directory_ok: bool = False):
    """An argparse type (also callable later): a path that exists (a file, or a folder when ``directory_ok``)."""

    def check(text: str) -> Path:
        p = Path(text)
        if not (p.is_file() or (directory_ok and p.is_dir())):
            raise MissingFile(f"{what} {p} does not exist" + (f"; {hint}" if hint else ""))
        return p

    return check


PLUGINS_HELP = ("the HadamardTransform plugin for TensorRT: python (register the Python plugin in this process), "
                "none, or PATH, a TensorRT plugin library such as libcompsrt_plugins.so (built from "
                "compsrt/plugins/cpp)")


def plugins_arg(text: str) -> str:
    """``--plugins python|none|PATH`` in every command; a PATH must exist (refused while parsing)."""
    if text in ("python", "none"):
        return text
    p = Path(text)
    if not p.is_file():
        raise MissingFile(f"plugin library {p} does not exist; pass --plugins python, none, or the path of a "
                          "TensorRT plugin library (build libcompsrt_plugins.so from compsrt/plugins/cpp)")
    return str(p)


def add_plugins_arg(p, default: str | None, extra: str = "") -> None:
    shown = default or "none"
    p.add_argument("--plugins", type=plugins_arg, default=default, metavar="python|none|PATH",
                   help=f"{PLUGINS_HELP}{extra} (default {shown})")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling: stores into ``dest`` (``const`` for flags) and prints a deprecation line."""

    def __init__(self, option_strings, dest, new: str, nargs=None, const=None, **kw):
        self.new = new
        super().__init__(option_strings, dest, nargs=0 if const is not None else nargs, const=const,
                         help=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(option_string, self.new)
        setattr(namespace, self.dest, self.const if self.const is not None else values)


def add_json_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout instead of text")


# -- models ------------------------------------------------------------------------------------------------------
def resolve_device(name: str | None) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; any other name as given."""
    from ..runtime.backends.torch import resolve_device as resolve

    return resolve(name)
