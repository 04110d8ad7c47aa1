"""Triton python-backend whole-image model (copied as ``compsrt_upscale/1/model.py``).

A uint8 (H, W, 3) request is padded and cut into tiles by compsrt's tiler, exactly as
``compsrt upscale`` does in-process; the tiles go to the tile model through BLS (so Triton batches
tiles of concurrent requests together) and are blended back. Bad requests (wrong rank, channels,
empty or above ``max_pixels``) get an error response; the server keeps serving.
"""

import json
import os
import sys

sys.path[:0] = [p for p in os.environ.get("COMPSRT_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

from compsrt.runtime.serving.dlpack import to_numpy, to_triton

from compsrt.runtime.backends import Backend
from compsrt.runtime.upscaler import TiledUpscaler


class _TileModel(Backend):
    """The tile model behind BLS, as a compsrt backend."""

    name = "triton-bls"

    def __init__(self, p):
        self.model, self.inp, self.out = p["tile_model"], p["input_name"], p["output_name"]
        self.scale = int(p["scale"])
        self.tile = (int(p["tile_h"]), int(p["tile_w"]))
        self.batch = int(p["batch"]) if int(p["fixed_batch"]) else None
        self.dtype = np.float16 if int(p["fp16"]) else np.float32

    def infer(self, x, timer):
        arr = np.ascontiguousarray(x, dtype=self.dtype)  # kept alive until exec() returns
        req = pb_utils.InferenceRequest(model_name=self.model, requested_output_names=[self.out],
                                        inputs=[to_triton(self.inp, arr)])
        resp = req.exec()
        if resp.has_error():
            raise RuntimeError(resp.error().message())
        return to_numpy(pb_utils.get_output_tensor_by_name(resp, self.out)).astype(np.float32)


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        p = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        self.max_pixels = int(p["max_pixels"])
        self.upscaler = TiledUpscaler(_TileModel(p), overlap=int(p["overlap"]), batch=int(p["batch"]))

    def _one(self, request):
        img = to_numpy(pb_utils.get_input_tensor_by_name(request, "IMAGE"))
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"IMAGE must be uint8 (H, W, 3) RGB, got shape {list(img.shape)}")
        h, w = img.shape[:2]
        if h == 0 or w == 0:
            raise ValueError(f"IMAGE is empty ({w}x{h})")
        if h * w > self.max_pixels:
            raise ValueError(f"IMAGE is {w}x{h} = {h * w:,} pixels, above this server's limit of {self.max_pixels:,}")
        return self.upscaler.upscale(np.ascontiguousarray(img)).rgb

    def execute(self, requests):
        responses = []
        for r in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=[to_triton("IMAGE", self._one(r))]))
            except Exception as exc:  # the request fails, the server keeps serving
                responses.append(pb_utils.InferenceResponse(output_tensors=[],
                                                            error=pb_utils.TritonError(f"compsrt_upscale: {exc}")))
        return responses
