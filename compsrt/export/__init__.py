"""ONNX export of SwinIR-light (FP or CompSRT deploy mode) for TensorRT; see docs/export.md.

* :func:`compsrt.export.exporter.export_checkpoint` / :func:`~compsrt.export.exporter.export_model`:
  static tile, dynamic or fixed batch, FP32/FP16 I/O, FP32/BF16/FP16 internals (:mod:`.precision`, with the
  FP16 overflow guard), Hadamard nodes (TensorRT
  plugin or constant MatMul) and symmetric INT8-container Q/DQ pairs for the quantized sites.
* :func:`compsrt.export.inspect.inspect_model`: Q/DQ and Hadamard counts, per-MatMul/Conv precision,
  weight bytes by dtype.

The quantized sites come through the site contract (:mod:`compsrt.sites`), never the calibration classes.
The TensorRT parse check (:func:`compsrt.runtime.engine.parse_and_build`) and the parity with ONNX Runtime
(:mod:`compsrt.runtime.parity`) run exported graphs, so they live in the runtime.
"""
