"""TensorRT import shim shared by the compsrt deployment stages.

``import_tensorrt()`` returns the full ``tensorrt`` module when it is installed, else
``tensorrt_rtx`` (TensorRT for RTX, which ships the same Python API for networks, the
ONNX parser and IPluginV3 plugins), else raises :class:`TensorRTUnavailableError` with
install instructions. Code written against the returned module should stick to the API
common to both (``trt.Builder``, ``trt.OnnxParser``, ``trt.IPluginV3*``...).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["TensorRTUnavailableError", "import_tensorrt", "tensorrt_flavor"]

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
