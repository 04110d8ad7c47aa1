"""Source shared by the tests that run TensorRT in a subprocess (an abort there must not kill pytest)."""

import textwrap

# Imports TensorRT(-RTX) and our plugin classes, and makes the creator print every plugin it creates,
# so a test can see that the parser found the creator and mapped the ONNX attributes to its fields.
TRACED_CREATOR_PRELUDE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from compsrt.plugins.trt_compat import import_tensorrt
    from compsrt.plugins.trt_plugin import make_plugin_classes
    trt = import_tensorrt()
    _, C = make_plugin_classes(trt)
    orig = C.create_plugin
    def create(self, name, fc, phase):
        plug = orig(self, name, fc, phase)
        print("CREATED", name, plug.attrs, flush=True)
        return plug
    C.create_plugin = create
    """
)
