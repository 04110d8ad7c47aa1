"""Serving upscaling behind Triton Inference Server.

* :mod:`.repo` writes a standard Triton model repository (``compsrt triton-repo``): a *tile model*
  (``tensorrt_plan`` for engines, ``onnxruntime`` for ONNX, ``python`` for the torch models) with a
  dynamic batch, and a *whole-image* python model that tiles server-side and calls the tile model
  through Triton's business-logic scripting (BLS), so requests from many clients are batched at
  the tile model.
* :mod:`.server` starts ``tritonserver`` (the NGC image's, or the one in the ``nvidia-pytriton``
  wheel) on such a repository and waits for readiness (``compsrt serve``).
* :mod:`.client` is the ``tritonclient`` side (``compsrt upscale --server URL``).
"""
