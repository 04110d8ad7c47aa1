"""compsrt.runtime: engine build, one inference interface over TensorRT / ONNX Runtime / torch,
tiled any-size upscaling, profiling, device self-test and the whole-pipeline demo.

* :mod:`.tiling` / :mod:`.upscaler`: fixed tiles with overlap and cosine blending, batched;
* :mod:`.backends`: :class:`TorchBackend` (FP, fake-quant, autocast, torch.compile), :class:`OrtBackend`;
* :mod:`.engine`: :func:`build_engine`, the engine sidecar and load-time checks, :class:`TrtBackend`;
* :mod:`.devmem`: pycuda / cuda-python device-memory layer;
* :mod:`.profile`, :mod:`.selftest`, :mod:`.pipeline`, :mod:`.cli`.
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
