"""Triton python-backend tile model (copied as ``compsrt_tile/1/model.py`` by ``compsrt triton-repo``).

Runs compsrt's torch (FP weights or compressed checkpoint) or ONNX Runtime backend on the tiles of
all requests of a dynamic batch at once. Needs ``compsrt`` (and torch / onnxruntime) importable in
the python backend's interpreter (``compsrt serve`` sets ``PYTHONPATH``). The torch device ``auto``
resolves here, when the server loads the model: cuda when the server host's torch sees a GPU, else cpu.
"""

import json
import os
import sys

sys.path[:0] = [p for p in os.environ.get("COMPSRT_PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

from compsrt.runtime.serving.dlpack import to_numpy, to_triton


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        p = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(here, p["file"])
        from compsrt.runtime import backends

        if p["source"] == "onnx":
            self.backend = backends.OrtBackend(path)
        elif p["source"] == "checkpoint":
            self.backend = backends.torch_checkpoint_backend(path, p.get("device", "cpu"), p.get("dtype", "fp32"))
        else:
            self.backend = backends.torch_fp_backend(int(p["scale"]), path, p.get("device", "cpu"), p.get("dtype", "fp32"))
        device = getattr(self.backend, "device", "cpu")  # a repository's "auto" is resolved here, on the server host
        pb_utils.Logger.log_info(f"compsrt_tile: {p['source']} model on {device} (repository device {p.get('device')})")

    def execute(self, requests):
        xs = [to_numpy(pb_utils.get_input_tensor_by_name(r, "LR")) for r in requests]
        try:
            y = self.backend.run(np.concatenate(xs))
        except Exception as exc:  # one bad batch fails its requests, never the server
            err = pb_utils.TritonError(f"compsrt_tile: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        out, i = [], 0
        for x in xs:
            out.append(pb_utils.InferenceResponse(output_tensors=[to_triton("SR", y[i : i + len(x)])]))
            i += len(x)
        return out

    def finalize(self):
        self.backend.close()
