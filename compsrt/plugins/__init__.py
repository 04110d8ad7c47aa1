"""compsrt.plugins: Hadamard TensorRT plugin (fast Walsh-Hadamard transform + fused INT8 quantize).

The ONNX node contract (op name, attributes, math) and the numpy references live in
:mod:`compsrt.hadamard`, shared with the export and the calibration; they are re-exported here.

Python plugin: :func:`register_python_plugin` (works with ``tensorrt`` and ``tensorrt_rtx``,
kernel through CuPy). C++ plugin: ``compsrt/plugins/cpp`` builds ``libcompsrt_plugins.so``
exposing the same creator (name, version, namespace, fields) for trtexec ``--dynamicPlugins``.
Do not register both in one process: the registry refuses the second.
"""

from __future__ import annotations

from ..hadamard import (PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION, hadamard_matrix, onnx_node_attributes,
                        reference_hadamard, reference_quantize)
from .trt_plugin import register_python_plugin

__all__ = [
    "PLUGIN_NAME",
    "PLUGIN_VERSION",
    "PLUGIN_NAMESPACE",
    "register_python_plugin",
    "hadamard_matrix",
    "reference_hadamard",
    "reference_quantize",
    "onnx_node_attributes",
]
