"""``compsrt triton-repo``: a model repository for a stock Triton Inference Server.

Layout (two models)::

    REPO/compsrt_tile/config.pbtxt      the tile model: (N, 3, th, tw) float32 -> (N, 3, s*th, s*tw)
    REPO/compsrt_tile/1/model.plan      tensorrt_plan  (--engine)
                        model.onnx      onnxruntime    (--onnx; or python + ONNX Runtime with --runtime python)
                        model.py + weights / checkpoint   python (--checkpoint, FP weights)
    REPO/compsrt_upscale/config.pbtxt   whole images: uint8 (H, W, 3) -> uint8 (sH, sW, 3)
    REPO/compsrt_upscale/1/model.py     tiles server-side (compsrt's tiler) and calls compsrt_tile via BLS
    REPO/compsrt_repo.json              what was written, from what, and how to start it

The tile model batches dynamically (requests of many whole-image calls are merged) except for
TensorRT engines, whose optimisation profile fixes the batch (``compsrt build --batch``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...errors import CompsrtError
from ...files import atomic_write_text, temp_dir_beside

TILE_MODEL = "compsrt_tile"
IMAGE_MODEL = "compsrt_upscale"
HERE = Path(__file__).resolve().parent
REPO_FORMAT = "compsrt-triton-repo/1"


@dataclass
class RepoOptions:
    tile: int | tuple[int, int] = 64  # LR tile (N or (h, w)) of the python tile model (ONNX/engines: their own)
    max_batch: int = 8  # the tile model's max_batch_size (dynamic batch)
    tiles_per_request: int = 4  # tiles the whole-image model sends per BLS request
    overlap: int = 16
    instances: int = 1  # instance_group count per model
    kind: str = "auto"  # instance kind: auto (GPU for engines / cuda devices), cpu, gpu
    device: str = "cpu"  # torch device inside the python tile model; auto: resolved on the server host
    dtype: str = "fp32"
    max_pixels: int = 4_000_000  # whole-image requests above this many input pixels are refused
    queue_delay_us: int = 2000  # dynamic batching: how long the tile model waits to fill a batch
    runtime: str = "auto"  # for --onnx: onnxruntime (stock backend) or python (ONNX Runtime inside python)


def _dims(values) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def _params(params: dict) -> str:
    return "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in params.items())


def tile_config(backend: str, in_name: str, out_name: str, tile: tuple[int, int], scale: int, max_batch: int,
                fixed_batch: int | None, instances: int, kind: str, queue_delay_us: int, params: dict | None = None,
                io_type: str = "TYPE_FP32") -> str:
    th, tw = tile
    platform = 'platform: "tensorrt_plan"\n' if backend == "tensorrt" else f'backend: "{backend}"\n'
    if fixed_batch:  # engines: the batch is part of the dims, Triton does not batch
        lines = [f'name: "{TILE_MODEL}"\n', platform, "max_batch_size: 0\n"]
        idims, odims = [fixed_batch, 3, th, tw], [fixed_batch, 3, th * scale, tw * scale]
    else:
        lines = [f'name: "{TILE_MODEL}"\n', platform, f"max_batch_size: {max_batch}\n"]
        idims, odims = [3, th, tw], [3, th * scale, tw * scale]
    lines.append(f'input [ {{ name: "{in_name}" data_type: {io_type} dims: {_dims(idims)} }} ]\n')
    lines.append(f'output [ {{ name: "{out_name}" data_type: {io_type} dims: {_dims(odims)} }} ]\n')
    if not fixed_batch:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n")
    lines.append(f"instance_group [ {{ count: {instances} kind: {kind} }} ]\n")
    lines.append(_params(params or {}))
    return "".join(lines)


def image_config(params: dict, instances: int) -> str:
    return (f'name: "{IMAGE_MODEL}"\nbackend: "python"\nmax_batch_size: 0\n'
            'input [ { name: "IMAGE" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] } ]\n'
            'output [ { name: "IMAGE" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] } ]\n'
            f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n" + _params(params))


def validate_config(text: str) -> None:
    """Parse ``config.pbtxt`` text against Triton's ModelConfig protobuf (from tritonclient)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return  # tritonclient absent: the server validates it at load time
    try:
        text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:  # a bug here, not a user error
        raise AssertionError(f"generated config.pbtxt does not parse: {exc}\n{text}") from None


def _onnx_io(path: Path) -> tuple[str, str, list, list, str]:
    """(input name, output name, input dims, output dims, Triton io type) of an image model; -1 = dynamic."""
    import onnx

    from ...export.inspect import load_onnx

    m = load_onnx(path, external_data=False)  # refuses empty and non-ONNX files, one line
    fix = "serve an image model written by `compsrt export` (input N x 3 x H x W)"
    inp, out = m.graph.input[0], m.graph.output[0]

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]

    if len(dims(inp)) != 4 or dims(inp)[1] not in (3, -1):
        raise CompsrtError(f"{path} takes {inp.name} of shape {dims(inp)}, not an image batch; {fix}")
    elem = inp.type.tensor_type.elem_type
    return inp.name, out.name, dims(inp), dims(out), "TYPE_FP16" if elem == onnx.TensorProto.FLOAT16 else "TYPE_FP32"


def _onnx_scale(path: Path, meta: dict, in_dims: list, out_dims: list, requested: int | None) -> int:
    """The graph's scale (sidecar, else static output / input height); ``requested`` must agree with it."""
    from ...artifacts import check_scale

    found = meta.get("scale")
    if not found and len(out_dims) == 4 and in_dims[2] > 0 and out_dims[2] > 0 and out_dims[2] % in_dims[2] == 0:
        found = out_dims[2] // in_dims[2]
    s = check_scale(requested, int(found) if found else None, path) or requested
    if not s:
        raise CompsrtError(f"{path} records no scale (no compsrt sidecar, dynamic output size); pass --scale 2, 3 or 4")
    return int(s)


def _write_model(root: Path, name: str, config: str, files: dict[str, Path | str]) -> None:
    validate_config(config)
    d = root / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "config.pbtxt", config)
    for dest, src in files.items():
        if isinstance(src, Path):
            shutil.copyfile(src, d / "1" / dest)
        else:
            atomic_write_text(d / "1" / dest, src)


def write_repository(out: Path, *, engine: Path | None = None, onnx: Path | None = None,
                     checkpoint: Path | None = None, scale: int | None = None, weights: Path | None = None,
                     options: RepoOptions | None = None) -> dict:
    """Write the two-model repository under ``out``; returns the manifest (also ``compsrt_repo.json``).

    ``scale``: the requested factor (``--scale``); a model that records another is refused. Everything is
    written into a temporary folder beside ``out`` and moved into place only when all of it succeeded:
    a refused or failed run leaves ``out`` as it was (absent, or the previous repository).
    """
    o = options or RepoOptions()
    chosen = [n for n, v in (("--engine", engine), ("--onnx", onnx), ("--checkpoint", checkpoint)) if v]
    if len(chosen) > 1:
        raise CompsrtError(f"pass only one of --engine, --onnx, --checkpoint (got {', '.join(chosen)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CompsrtError(f"{out} is a file; pass a folder for the repository")
    if out.exists() and any(out.iterdir()) and not (out / "compsrt_repo.json").is_file():
        raise CompsrtError(f"{out} exists and is not a compsrt model repository; choose an empty or new folder")
    tmp = temp_dir_beside(out)
    try:
        manifest = _write_into(tmp, engine, onnx, checkpoint, scale, weights, o)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists():
            tmp.rename(out)
        else:  # a compsrt repository (or an empty folder): its two models and manifest are replaced
            for entry in (TILE_MODEL, IMAGE_MODEL, "compsrt_repo.json"):
                old = out / entry
                if old.is_dir():
                    shutil.rmtree(old)
                else:
                    old.unlink(missing_ok=True)
                (tmp / entry).rename(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when renamed into place
    return manifest


def _write_into(out: Path, engine, onnx, checkpoint, scale: int | None, weights, o: RepoOptions) -> dict:
    from ...artifacts import check_scale
    from ..backends.torch import check_device_name

    tile_req = (o.tile, o.tile) if isinstance(o.tile, int) else tuple(o.tile)
    if min(tile_req) <= 0 or tile_req[0] % 8 or tile_req[1] % 8:
        raise CompsrtError(f"--tile {tile_req[1]}x{tile_req[0]} must be a positive multiple of 8 (the window)")
    check_device_name(o.device)
    gpu_kind = "KIND_GPU" if (o.kind == "gpu" or (o.kind == "auto" and (engine or o.device.startswith("cuda")))) else "KIND_CPU"
    fixed_batch = None
    notes: list[str] = []
    tile_params: dict = {}
    if engine:
        from ...artifacts import ENGINE_FORMAT, read_sidecar

        engine = Path(engine)
        if not engine.is_file():
            raise CompsrtError(f"engine {engine} does not exist; build it with `compsrt build`")
        meta = read_sidecar(engine, ENGINE_FORMAT, fix="rebuild it with `compsrt build`")
        if not meta.get("tile") or not meta.get("scale"):
            raise CompsrtError(f"{engine} is not an image engine with a fixed tile (sidecar has no tile/scale)")
        tile, s, fixed_batch = tuple(meta["tile"]), int(meta["scale"]), int(meta["batch"])
        check_scale(scale, s, engine)
        in_name, out_name = meta["inputs"][0], meta["outputs"][0]
        io_type = "TYPE_FP16" if "HALF" in str(meta.get("input_dtype", "")).upper() else "TYPE_FP32"
        backend, files = "tensorrt", {"model.plan": engine}
        plugin = meta.get("plugin") or {}
        if plugin.get("kind") not in (None, "none"):
            notes.append("the engine uses the HadamardTransform plugin: start tritonserver with "
                         "LD_PRELOAD=/path/libcompsrt_plugins.so or "
                         "--backend-config=tensorrt,plugins=/path/libcompsrt_plugins.so (the C++ library; "
                         "the Python plugin cannot load in Triton's tensorrt backend)")
        notes.append(f"TensorRT engines have a fixed batch ({fixed_batch}, from their optimisation profile): "
                     "Triton does not merge requests at the tile model")
    elif onnx:
        onnx = Path(onnx)
        if not onnx.is_file():
            raise CompsrtError(f"ONNX model {onnx} does not exist; create it with `compsrt export`")
        in_name, out_name, dims, out_dims, io_type = _onnx_io(onnx)
        from ...artifacts import read_sidecar, sidecar_tile

        meta = read_sidecar(onnx)
        tile = tuple(dims[2:]) if all(d > 0 for d in dims[2:]) else sidecar_tile(meta) or tile_req
        s = _onnx_scale(onnx, meta, dims, out_dims, scale)
        runtime = "onnxruntime" if o.runtime == "auto" else o.runtime
        if runtime not in ("onnxruntime", "python"):
            raise CompsrtError(f"--runtime must be onnxruntime or python, got {o.runtime}")
        if runtime == "onnxruntime":
            if dims[0] > 0:
                raise CompsrtError(f"{onnx} has a fixed batch of {dims[0]}; the onnxruntime tile model needs a dynamic "
                                   "batch: re-export with `compsrt export --batch dynamic` (or use --runtime python)")
            backend, files = "onnxruntime", {"model.onnx": onnx}
        else:
            backend, files = "python", {"model.py": HERE / "triton_tile_model.py", "model.onnx": onnx}
            tile_params = {"source": "onnx", "file": "model.onnx", "scale": s}
            in_name, out_name, io_type = "LR", "SR", "TYPE_FP32"
            notes.append("ONNX served through the python backend with ONNX Runtime inside (no onnxruntime backend "
                         "in this Triton); a stock NGC server runs the same ONNX with --runtime onnxruntime")
    else:
        tile = tile_req
        in_name, out_name, io_type, backend = "LR", "SR", "TYPE_FP32", "python"
        files = {"model.py": HERE / "triton_tile_model.py"}
        if checkpoint:
            checkpoint = Path(checkpoint)
            if not checkpoint.is_file():
                raise CompsrtError(f"checkpoint {checkpoint} does not exist; create one with `compsrt calibrate`")
            from ..backends import torch_checkpoint_backend

            s = torch_checkpoint_backend(checkpoint).scale  # refuses a bad checkpoint now, not at server start
            check_scale(scale, s, checkpoint)
            files["model" + checkpoint.suffix] = checkpoint
            tile_params = {"source": "checkpoint", "file": "model" + checkpoint.suffix, "scale": s}
        else:
            from ...models.weights import load_swinir, read_state_dict, resolve_weights, scale_of_state_dict

            s = scale or 4
            if weights is not None:
                s = check_scale(scale, scale_of_state_dict(read_state_dict(weights)), weights) or s
            w = resolve_weights(s, weights)
            load_swinir(s, w)  # validates names and shapes now
            files["weights.pth"] = Path(w)
            tile_params = {"source": "weights", "file": "weights.pth", "scale": s}
        tile_params |= {"device": o.device, "dtype": o.dtype}
    _write_model(out, TILE_MODEL,
                 tile_config(backend, in_name, out_name, tile, s, o.max_batch, fixed_batch, o.instances,
                             gpu_kind if backend != "python" or o.device.startswith("cuda") else "KIND_CPU",
                             o.queue_delay_us, tile_params, io_type), files)
    image_params = {"tile_model": TILE_MODEL, "input_name": in_name, "output_name": out_name,
                    "tile_h": tile[0], "tile_w": tile[1], "scale": s, "overlap": min(o.overlap, min(tile) // 2),
                    "batch": fixed_batch or min(o.tiles_per_request, o.max_batch), "fixed_batch": int(bool(fixed_batch)),
                    "fp16": int(io_type == "TYPE_FP16"), "max_pixels": o.max_pixels}
    _write_model(out, IMAGE_MODEL, image_config(image_params, o.instances), {"model.py": HERE / "triton_image_model.py"})
    manifest = {"format": REPO_FORMAT, "tile_model": {"name": TILE_MODEL, "backend": backend, "tile": list(tile),
                                                      "scale": s, "fixed_batch": fixed_batch, "max_batch": o.max_batch},
                "image_model": {"name": IMAGE_MODEL, "max_pixels": o.max_pixels},
                "source": {"engine": str(engine) if engine else None, "onnx": str(onnx) if onnx else None,
                           "checkpoint": str(checkpoint) if checkpoint else None},
                "needs_compsrt": True,  # the whole-image model imports compsrt's tiler (numpy only)
                "notes": notes}
    atomic_write_text(out / "compsrt_repo.json", json.dumps(manifest, indent=1))
    return manifest
