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

from ..errors import CompsrtError

DEVICE_HELP = "torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N (default %(default)s)"
PLUGINS_HELP = ("HadamardTransform plugin: python (register the Python plugin), none, or the path of "
                "libcompsrt_plugins.so (default %(default)s)")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at ``--help`` instead of printing the whole usage."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


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


def tile_arg(text: str):
    """``--tile`` for the runtime: N, WxH, or 0 = the whole image in one piece (any-size backends)."""
    return 0 if str(text).strip() == "0" else parse_tile(text)


def square_tile_arg(text: str) -> int:
    h, w = parse_tile(text)
    if h != w:
        raise argparse.ArgumentTypeError(f"expected one square size N here, got {text!r}")
    return h


def fmt_tile(tile) -> str:
    """(h, w) -> ``"WxH"``."""
    h, w = (tile, tile) if isinstance(tile, int) else tile
    return f"{w}x{h}"


class TileAction(argparse.Action):
    """``--tile N|WxH``; the old two-number ``--tile H W`` (export, export-parity) is still read."""

    def __init__(self, option_strings, dest, **kw):
        kw.setdefault("metavar", "N|WxH")
        super().__init__(option_strings, dest, nargs="+", **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            if len(values) == 1:
                tile = parse_tile(values[0])
            elif len(values) == 2 and all(v.isdigit() for v in values):
                tile = (int(values[0]), int(values[1]))
                deprecated(f"--tile {values[0]} {values[1]} (H W)", f"--tile {fmt_tile(tile)} (W x H)")
                if min(tile) <= 0:
                    raise argparse.ArgumentTypeError(f"sizes must be positive, got {' '.join(values)!r}")
            else:
                raise argparse.ArgumentTypeError(f"expected N or WxH, e.g. 64 or 96x64, got {' '.join(values)!r}")
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, self.dest, tile)


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
    if name in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def check_scale(requested: int | None, actual: int, source) -> int:
    """The model's scale; a different ``--scale`` is refused the same way by every command."""
    if requested is not None and actual and requested != actual:
        raise CompsrtError(f"{source} is a x{actual} model; pass --scale {actual} or omit --scale")
    return actual


class Spinner:
    """A one-line "still working" indicator on stderr for long silent calls (TensorRT's builder).

    On a terminal it redraws ``msg | 12 s`` in place and erases itself at the end; elsewhere (logs, pipes)
    it stays silent: the command's own summary line carries the time, and an error stays one line.
    """

    FRAMES = "|/-\\"

    def __init__(self, msg: str, enabled: bool = True, stream=None):
        self.msg, self.enabled, self.stream = msg, enabled, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self):
        import threading
        import time

        self.t0, self._stop = time.perf_counter(), threading.Event()
        if not (self.enabled and self.tty):
            return self

        def spin():
            i = 0
            while not self._stop.wait(0.2):
                self.stream.write(f"\r{self.msg} {self.FRAMES[i % 4]} {time.perf_counter() - self.t0:.0f} s")
                self.stream.flush()
                i += 1

        self._thread = threading.Thread(target=spin, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled and self.tty:
            self._stop.set()
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()
        return False
