"""``HadamardTransform`` as a Python TensorRT IPluginV3 (core + build + runtime).

The classes are created against the module returned by ``import_tensorrt()`` (``tensorrt``
or ``tensorrt_rtx``): TensorRT is not imported when this module is imported. All logic
that does not touch TensorRT objects lives in core.py; the kernel is launched through
CuPy/NVRTC (kernel.py) on the stream TensorRT passes to ``enqueue``, without any host
synchronisation.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Dict, Optional, Tuple

import numpy as np

from ..hadamard import PLUGIN_NAME, PLUGIN_NAMESPACE, PLUGIN_VERSION
from .core import FIELD_ORDER, INT_FIELDS, HadamardAttrs, HadamardPluginCore

_CLASS_CACHE: Dict[str, Tuple[type, type]] = {}


def _fc_items(fc):
    """(name, data) pairs from a PluginFieldCollection (or any iterable of PluginField)."""
    if fc is None:
        return []
    return [(f.name, f.data) for f in fc]


def make_plugin_classes(trt: ModuleType) -> Tuple[type, type]:
    """Return (PluginClass, CreatorClass) bound to the given TensorRT module (cached)."""
    key = trt.__name__
    if key in _CLASS_CACHE:
        return _CLASS_CACHE[key]

    class HadamardTransformPlugin(
        trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime
    ):
        def __init__(self, attrs: HadamardAttrs, phase=None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.num_outputs = 1
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_name = PLUGIN_NAME
            self.plugin_version = PLUGIN_VERSION
            # Identical attributes -> identical kernel: share timing between instances.
            self.timing_cache_id = "hadamard_" + "_".join(
                f"{k}{v}" for k, v in sorted(vars(attrs).items())
            )
            self.attrs = attrs
            self.phase = phase
            self.core = HadamardPluginCore(attrs)

        # ---- core ----
        def get_capability_interface(self, type):
            return self

        def clone(self):
            return HadamardTransformPlugin(HadamardAttrs(**vars(self.attrs)), self.phase)

        # ---- build ----
        def get_output_data_types(self, input_types):
            if self.attrs.quantize:
                return [trt.DataType.INT8]
            return [input_types[0]]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            in_dims = inputs[0]
            rank = len(in_dims)
            self.attrs.check_axis(rank)
            last = in_dims[rank - 1]
            if last.is_constant() and last.get_constant_value() != self.attrs.width:
                raise ValueError(
                    f"HadamardTransform: input last dim {last.get_constant_value()} != width {self.attrs.width}"
                )
            out = trt.DimsExprs(in_dims)
            out[rank - 1] = expr_builder.constant(self.attrs.n)
            return [out]

        def supports_format_combination(self, pos, in_out, num_inputs):
            if num_inputs != 1 or pos >= len(in_out):
                return False
            types = [d.desc.type for d in in_out]
            formats = [d.desc.format for d in in_out]
            return self.attrs.supports(pos, types, formats)

        def configure_plugin(self, inp, out):
            pass

        def get_workspace_size(self, input_desc, output_desc):
            return 0

        # ---- runtime ----
        def on_shape_change(self, inp, out):
            dims = list(inp[0].dims)
            self.attrs.output_shape(dims)  # validates rank/axis/width

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            self.core.enqueue(input_desc, output_desc, inputs, outputs, workspace, stream)

        def attach_to_context(self, context):
            return self.clone()

        def get_fields_to_serialize(self):
            # PluginField does not own its buffer: keep the numpy arrays alive with the plugin.
            self._serialized_fields = self.attrs.field_items()
            return trt.PluginFieldCollection(
                [
                    trt.PluginField(
                        name, data,
                        trt.PluginFieldType.INT32 if name in INT_FIELDS else trt.PluginFieldType.FLOAT32,
                    )
                    for name, data in self._serialized_fields
                ]
            )

    class HadamardTransformCreator(trt.IPluginCreatorV3One):
        def __init__(self):
            trt.IPluginCreatorV3One.__init__(self)
            self.name = PLUGIN_NAME
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_version = PLUGIN_VERSION
            self._field_buffers = [
                (name, np.array([], dtype=np.int32 if name in INT_FIELDS else np.float32)) for name in FIELD_ORDER
            ]
            self.field_names = trt.PluginFieldCollection(
                [
                    trt.PluginField(
                        name, buf, trt.PluginFieldType.INT32 if name in INT_FIELDS else trt.PluginFieldType.FLOAT32
                    )
                    for name, buf in self._field_buffers
                ]
            )

        def create_plugin(self, name, fc, phase):
            return HadamardTransformPlugin(HadamardAttrs.from_fields(_fc_items(fc)), phase)

    _CLASS_CACHE[key] = (HadamardTransformPlugin, HadamardTransformCreator)
    return _CLASS_CACHE[key]


_REGISTERED: Dict[str, object] = {}  # keeps creators alive (the registry does not own them)


def register_python_plugin(trt: Optional[ModuleType] = None, fix_rtx_library: bool = True) -> bool:
    """Register the Python ``HadamardTransform`` creator under namespace ``compsrt``.

    Returns True when the creator is (now or already) registered by this process, False if
    TensorRT is unavailable or the registry refused it (e.g. the C++ library's creator with
    the same name/version/namespace is already loaded).

    With TensorRT-RTX on Linux, ``fix_rtx_library`` first makes sure the ONNX parser can
    dlopen ``libtensorrt_rtx.so`` (``trt_compat.ensure_rtx_library_alias``: the wheels ship
    only ``libtensorrt_rtx.so.1`` and the parser aborts the process after ``createPlugin``
    without the unversioned name). If that alias cannot be provided, the creator is *not*
    registered (False, with a warning): the parser then reports an unknown op instead of
    killing the process.
    """
    if trt is None:
        from .trt_compat import TensorRTUnavailableError, import_tensorrt

        try:
            trt = import_tensorrt()
        except TensorRTUnavailableError:
            return False
    if trt.__name__ in _REGISTERED:
        return True
    from .trt_compat import ensure_rtx_library_alias, tensorrt_flavor

    if fix_rtx_library and tensorrt_flavor(trt) == "tensorrt_rtx":
        state = ensure_rtx_library_alias(trt)
        if state == "missing":
            warnings.warn(
                "TensorRT-RTX: 'libtensorrt_rtx.so' is not loadable and could not be created next to "
                "libtensorrt_rtx.so.1 (read-only install?). The RTX ONNX parser dlopen()s that name when it "
                "imports an IPluginV3 node and aborts the process without it, so the HadamardTransform creator "
                "was not registered. Fix: compsrt.plugins.trt_compat.make_rtx_library_alias_dir(DIR) and start "
                "Python with LD_LIBRARY_PATH=DIR, or symlink libtensorrt_rtx.so -> libtensorrt_rtx.so.1 in the "
                "tensorrt_rtx_libs directory.",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
    _, creator_cls = make_plugin_classes(trt)
    creator = creator_cls()
    ok = bool(trt.get_plugin_registry().register_creator(creator, PLUGIN_NAMESPACE))
    if ok:
        _REGISTERED[trt.__name__] = creator
    return ok
