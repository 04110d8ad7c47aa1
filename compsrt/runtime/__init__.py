"""compsrt.runtime: engine build, one inference interface over TensorRT / ONNX Runtime / torch,
tiled any-size upscaling, comparison, profiling and the device self-test.

* :mod:`.tiling` / :mod:`.upscaler`: fixed tiles with overlap and cosine blending, batched;
* :mod:`.backends`: per framework a loader and a runner (torch, ONNX Runtime, TensorRT);
* :mod:`.engine`: the one TensorRT build module (:func:`build_engine`, the export's :func:`parse_and_build`);
* :mod:`.devmem`: pycuda / cuda-python device-memory layer;
* :mod:`.profile`, :mod:`.selftest`.
"""

__all__ = ["Backend", "OrtBackend", "TorchBackend", "TiledUpscaler"]


def __getattr__(name: str):
    """Lazy: ``compsrt --help`` imports the runtime CLI without numpy/PIL/torch (PEP 562)."""
    if name == "TiledUpscaler":
        from .upscaler import TiledUpscaler

        return TiledUpscaler
    if name in __all__:
        from . import backends

        return getattr(backends, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
