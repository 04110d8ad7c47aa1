"""Parity of the exported graph (ONNX Runtime, CPU, matmul variant) with the PyTorch model it came from.

Both sides see exactly the same tiles: the LR image is reflect-padded (edge-padded where the image is
too small to reflect) to a multiple of the tile, cut into non-overlapping tiles, each tile is upscaled,
the outputs are stitched and cropped. Scores follow the benchmark protocol (Y channel, border = scale,
uint8 output); value agreement is measured on the float outputs clamped to [0, 1].
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import CompsrtError

TileFn = Callable[[np.ndarray], np.ndarray]  # (N, 3, th, tw) float32 -> (N, 3, s*th, s*tw)


def pad_to_tiles(lr: np.ndarray, tile: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) -> padded (H', W', 3) with H', W' multiples of the tile."""
    h, w = lr.shape[:2]
    ph, pw = (-h) % tile[0], (-w) % tile[1]
    if not (ph or pw):
        return lr
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(lr, ((0, ph), (0, pw), (0, 0)), mode=mode)


def upscale_tiled(lr_u8: np.ndarray, tile: tuple[int, int], scale: int, fn: TileFn, batch: int = 8) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 RGB (sH, sW, 3), unclamped, through non-overlapping tiles."""
    h, w = lr_u8.shape[:2]
    x = pad_to_tiles(lr_u8.astype(np.float32) / 255.0, tile)
    th, tw = tile
    gh, gw = x.shape[0] // th, x.shape[1] // tw
    tiles = x.reshape(gh, th, gw, tw, 3).transpose(0, 2, 4, 1, 3).reshape(gh * gw, 3, th, tw)
    outs = [fn(np.ascontiguousarray(tiles[i : i + batch])) for i in range(0, len(tiles), batch)]
    y = np.concatenate(outs, 0).astype(np.float32)
    y = y.reshape(gh, gw, 3, th * scale, tw * scale).transpose(0, 3, 1, 4, 2).reshape(gh * th * scale, gw * tw * scale, 3)
    return y[: h * scale, : w * scale]


def torch_tile_fn(model: torch.nn.Module) -> TileFn:
    @torch.inference_mode()
    def fn(t: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(t)).float().numpy()

    return fn


def ort_tile_fn(onnx_path: str | os.PathLike, threads: int | None = None) -> TileFn:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    dtype = np.float16 if "float16" in inp.type else np.float32

    def fn(t: np.ndarray) -> np.ndarray:
        if fixed:
            return np.concatenate([sess.run(None, {inp.name: t[i : i + fixed].astype(dtype)})[0]
                                   for i in range(0, len(t), fixed)], 0).astype(np.float32)
        return sess.run(None, {inp.name: t.astype(dtype)})[0].astype(np.float32)

    return fn


def compare_outputs(a: np.ndarray, b: np.ndarray, tol: float = 1e-3) -> dict:
    d = np.abs(np.clip(a, 0, 1) - np.clip(b, 0, 1))
    return {"max_abs": float(d.max()), "n_off": int((d > tol).sum()), "n": int(d.size)}


def run_parity(checkpoint: str | os.PathLike, tile: tuple[int, int], dataset: str = "Set5",
               data_root: str | os.PathLike | None = None, onnx_path: str | os.PathLike | None = None,
               tol: float = 1e-3) -> dict:
    """Score ``dataset`` with the deploy-mode PyTorch model and with ONNX Runtime on the same tiles."""
    from ..evaluation.benchmark import benchmark_pairs
    from ..evaluation.metrics import score_y, to_uint8
    from ..images import load_image
    from ..paths import benchmarks_dir
    from .exporter import ExportOptions, export_model, load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    scale = int(model.scale)
    root = Path(data_root) if data_root else benchmarks_dir()
    tmpdir = None
    t0 = time.perf_counter()
    if onnx_path is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="compsrt-parity-")
        onnx_path = Path(tmpdir.name) / "model.onnx"
        export_model(model, onnx_path, ExportOptions(tile=tile, batch=None, hadamard="matmul"), meta)
    export_s = time.perf_counter() - t0
    try:
        ort_fn, torch_fn = ort_tile_fn(onnx_path), torch_tile_fn(model)
        rows, n_off, n_all, max_abs = [], 0, 0, 0.0
        t_torch = t_ort = 0.0
        for name, lr_path, hr_path in benchmark_pairs(root, dataset, scale):
            lr, hr = load_image(lr_path).rgb, load_image(hr_path).rgb
            t = time.perf_counter()
            y_t = upscale_tiled(lr, tile, scale, torch_fn)
            t_torch += time.perf_counter() - t
            t = time.perf_counter()
            y_o = upscale_tiled(lr, tile, scale, ort_fn)
            t_ort += time.perf_counter() - t
            c = compare_outputs(y_t, y_o, tol)
            p_t, _ = score_y(to_uint8(y_t), hr, border=scale)
            p_o, _ = score_y(to_uint8(y_o), hr, border=scale)
            rows.append({"image": name, "psnr_torch": p_t, "psnr_onnx": p_o, "max_abs": c["max_abs"],
                         "frac_off": c["n_off"] / c["n"]})
            n_off += c["n_off"]
            n_all += c["n"]
            max_abs = max(max_abs, c["max_abs"])
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    psnr_t = float(np.mean([r["psnr_torch"] for r in rows]))
    psnr_o = float(np.mean([r["psnr_onnx"] for r in rows]))
    return {
        "checkpoint": str(checkpoint), "dataset": dataset, "scale": scale, "tile": list(tile),
        "mode": meta.get("mode", "fp"), "bits": meta.get("bits", 32),
        "psnr_torch": psnr_t, "psnr_onnx": psnr_o, "psnr_diff": psnr_o - psnr_t,
        "frac_off": n_off / n_all, "n_off": n_off, "n_values": n_all, "max_abs": max_abs, "tol": tol,
        "seconds": {"export": export_s, "torch": t_torch, "onnxruntime": t_ort}, "images": rows,
    }


def format_parity(r: dict) -> str:
    lines = [f"{r['dataset']} x{r['scale']} {r['mode']} {r['bits']}-bit, tile {r['tile'][0]}x{r['tile'][1]}"]
    lines += [f"  {x['image']:<10} torch {x['psnr_torch']:.4f}  onnx {x['psnr_onnx']:.4f}  max|d| {x['max_abs']:.2e}  "
              f"off {100 * x['frac_off']:.4f} %" for x in r["images"]]
    lines.append(f"  mean PSNR torch {r['psnr_torch']:.4f} dB, onnxruntime {r['psnr_onnx']:.4f} dB "
                 f"(diff {r['psnr_diff']:+.4f}); {r['n_off']}/{r['n_values']} values "
                 f"({100 * r['frac_off']:.4f} %) off by > {r['tol']:g}; max |diff| {r['max_abs']:.3e}")
    s = r["seconds"]
    lines.append(f"  seconds: export {s['export']:.1f}, torch {s['torch']:.1f}, onnxruntime {s['onnxruntime']:.1f}")
    return "\n".join(lines)
