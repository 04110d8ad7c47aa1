"""TensorRT import shim shared by the compsrt deployment stages.

``import_tensorrt()`` returns the full ``tensorrt`` module when it is installed, else
``tensorrt_rtx`` (TensorRT for RTX, which ships the same Python API for networks, the
ONNX parser and IPluginV3 plugins), else raises :class:`TensorRTUnavailableError` with
install instructions. Code written against the returned module should stick to the API
common to both (``trt.Builder``, ``trt.OnnxParser``, ``trt.IPluginV3*``...).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

__all__ = [
    "TensorRTUnavailableError",
    "import_tensorrt",
    "tensorrt_flavor",
    "RTX_LIBRARY_ALIAS",
    "rtx_library_dir",
    "ensure_rtx_library_alias",
    "make_rtx_library_alias_dir",
]

INSTALL_HINT = (
    "TensorRT is not importable. Install TensorRT-RTX with "
    "`pip install tensorrt-rtx-cu13==1.7.1.116` (import name `tensorrt_rtx`; builds engines on "
    "CPU-only machines, runs them on RTX/Ampere+ consumer GPUs), or full TensorRT "
    "(`pip install tensorrt-cu13`, or an NGC TensorRT container) for data-center GPUs such as the H200."
)

_CANDIDATES = ("tensorrt", "tensorrt_rtx")


class TensorRTUnavailableError(ImportError):
    """Neither ``tensorrt`` nor ``tensorrt_rtx`` could be imported."""


def import_tensorrt(prefer: str | None = None) -> ModuleType:
    """Return ``tensorrt`` if importable, else ``tensorrt_rtx``.

    ``prefer`` ("tensorrt" or "tensorrt_rtx") tries that module first.
    """
    order = list(_CANDIDATES)
    if prefer is not None:
        if prefer not in _CANDIDATES:
            raise ValueError(f"prefer must be one of {_CANDIDATES}, got {prefer!r}")
        order.remove(prefer)
        order.insert(0, prefer)
    errors = []
    for name in order:
        try:
            return importlib.import_module(name)
        except ImportError as exc:  # not installed, or a broken install (missing libs)
            errors.append(f"{name}: {exc}")
    raise TensorRTUnavailableError(INSTALL_HINT + " (" + "; ".join(errors) + ")")


def tensorrt_flavor(trt: ModuleType) -> str:
    """'tensorrt' or 'tensorrt_rtx' for a module returned by :func:`import_tensorrt`."""
    return trt.__name__.split(".")[0]


# --------------------------------------------------------------------------------------------
# TensorRT-RTX 1.7 wheel packaging gap (Linux).
#
# When the RTX ONNX parser imports a node as an IPluginV3 plugin (after createPlugin), it
# dlopen()s the *unversioned* "libtensorrt_rtx.so" and looks up "getPrivateApi_INTERNAL" in it.
# The tensorrt-rtx-cu13 wheels ship only "libtensorrt_rtx.so.1", so the dlopen fails, the parser
# throws std::runtime_error("Unable to open library: libtensorrt_rtx.so due to ...") from a
# noexcept context and the process dies with "terminate called without an active exception".
# An alias "libtensorrt_rtx.so" -> "libtensorrt_rtx.so.1" that the parser can find (next to it:
# its DT_RPATH is $ORIGIN, or on LD_LIBRARY_PATH set before the process starts) fixes it: the
# alias resolves to the already loaded library, so no second copy of TensorRT-RTX is mapped.
# --------------------------------------------------------------------------------------------

RTX_LIBRARY_ALIAS = "libtensorrt_rtx.so"
RTX_LIBRARY_SONAME = "libtensorrt_rtx.so.1"


def rtx_library_dir() -> Optional[Path]:
    """Directory of the ``tensorrt_rtx_libs`` wheel (holds ``libtensorrt_rtx.so.1``), or None."""
    spec = importlib.util.find_spec("tensorrt_rtx_libs")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc).resolve()
        if (d / RTX_LIBRARY_SONAME).exists():
            return d
    return None


def _alias_resolvable_without_file() -> bool:
    """True if dlopen("libtensorrt_rtx.so") already resolves to the loaded library (LD_LIBRARY_PATH,
    ld.so.cache). RTLD_NOLOAD: never maps a second copy."""
    try:
        ctypes.CDLL(RTX_LIBRARY_ALIAS, mode=getattr(os, "RTLD_NOLOAD", 4) | ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        return False


def ensure_rtx_library_alias(
    trt: Optional[ModuleType] = None, libdir: Union[str, Path, None] = None, create: bool = True
) -> str:
    """Make the TensorRT-RTX ONNX parser able to import IPluginV3 plugins (see the note above).

    Returns ``"not-needed"`` (full TensorRT, or not Linux), ``"present"`` (the alias exists next to
    ``libtensorrt_rtx.so.1`` or already resolves), ``"created"`` (symlink created now) or
    ``"missing"`` (could not create it: read-only install, or ``create=False``). ``libdir``
    overrides the library directory (tests).
    """
    if trt is not None and tensorrt_flavor(trt) != "tensorrt_rtx":
        return "not-needed"
    if not sys.platform.startswith("linux"):
        return "not-needed"
    d = Path(libdir) if libdir is not None else rtx_library_dir()
    if d is None:
        return "not-needed" if trt is None else "missing"
    alias = d / RTX_LIBRARY_ALIAS
    if alias.exists():
        return "present"
    if libdir is None and _alias_resolvable_without_file():
        return "present"
    if not create:
        return "missing"
    try:
        if alias.is_symlink():  # dangling
            alias.unlink()
        os.symlink(RTX_LIBRARY_SONAME, alias)
    except OSError:
        return "missing"
    return "created"


def make_rtx_library_alias_dir(path: Union[str, Path]) -> Path:
    """Create ``path/libtensorrt_rtx.so`` -> the installed ``libtensorrt_rtx.so.1`` and return ``path``.

    For read-only installs: prepend ``path`` to ``LD_LIBRARY_PATH`` *before* starting the Python
    process that parses (glibc reads LD_LIBRARY_PATH once, at process start).
    """
    d = rtx_library_dir()
    if d is None:
        raise TensorRTUnavailableError("tensorrt_rtx_libs (libtensorrt_rtx.so.1) not found")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    alias = path / RTX_LIBRARY_ALIAS
    if alias.is_symlink() or alias.exists():
        alias.unlink()
    os.symlink(d / RTX_LIBRARY_SONAME, alias)
    return path
