"""CompSRT calibration: Hadamard-domain low-bit quantization of SwinIR-light.

Two formulations share one code path:

* ``paper``  - the authors' simulation (rotate, clip, asymmetric quantize, rotate back, crop);
* ``deploy`` - the form TensorRT's symmetric Q/DQ executes (matmuls in the rotated, padded domain,
  clamped integer codes, activation offsets folded into biases). See :mod:`compsrt.calibration.deploy`.

Entry points: :func:`compsrt.calibration.distill.calibrate`,
:func:`compsrt.calibration.checkpoint.load_model` (any model file); the export sees the quantized modules
through the site contract (:mod:`compsrt.sites`, answered by :mod:`compsrt.calibration.deploy`).
"""

__all__ = ["QuantConfig", "quantize_model"]


def __getattr__(name: str):
    """Lazy: the calibration CLI registers its options without importing torch (PEP 562)."""
    if name in __all__:
        from . import qmodel

        return getattr(qmodel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
