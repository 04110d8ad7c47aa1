"""NVIDIA ModelOpt's ONNX PTQ of our FP ONNX, scored the way compsrt scores its own graphs (issue 13's baseline).

Steps: export the FP SwinIR-light graph with compsrt (matmul variant, static tile, dynamic batch); sample
``--patches`` LR patches of the tile size from the TRAINING images (``compsrt.calibration.data``: T91, BSD200,
Kodak, DIV2K calib; never a benchmark image) into ``calib.npy``; run ModelOpt's own CLI
(``python -m modelopt.onnx.quantization``, defaults otherwise, as a new user would) once per ``--modes`` entry;
score every graph (FP included) on the benchmarks through ONNX Runtime CPU with compsrt's runtime tiler (graph
tile, no overlap, batches of 8: as ``compsrt export-parity``) and compsrt's Y-channel PSNR/SSIM
(``compsrt.evaluation``); record ONNX bytes and weight bytes by dtype (``compsrt.export.inspect``).

ModelOpt lives in its own virtual environment (it pulls onnxruntime-gpu and downgrades onnx), so this script
runs with compsrt's environment and calls ModelOpt through ``--modelopt-python``:

    python -m venv /work/venv-modelopt && /work/venv-modelopt/bin/pip install 'nvidia-modelopt[onnx]'
    .venv/bin/python -m benchmarks.export.modelopt_baseline --scale 4 --modelopt-python /work/venv-modelopt/bin/python \\
        --work /tmp/modelopt_x4 --out benchmarks/export/results/modelopt/x4.json

The quantized ONNX files stay in ``--work`` (not committed); ``benchmarks.export.engine_sizes`` builds them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODES = {"int8_entropy": ("int8", "entropy"), "int8_max": ("int8", "max"),
         "int4_awq_clip": ("int4", "awq_clip"), "int4_rtn_dq": ("int4", "rtn_dq")}


def export_fp(scale: int, tile: int, out: Path) -> dict:
    from compsrt.calibration.checkpoint import load_model
    from compsrt.export.exporter import ExportOptions, export_model
    from compsrt.paths import weights_dir

    weights = weights_dir() / f"swinir_light_x{scale}.pth"
    model, meta = load_model(weights)
    res = export_model(model, out, ExportOptions(tile=(tile, tile), batch=None, hadamard="matmul"), meta)
    return {"weights": str(weights), "sidecar": str(res.sidecar_path)}


def calibration_patches(scale: int, tile: int, n: int, seed: int, out: Path) -> dict:
    """``n`` random LR patches (N, 3, tile, tile) float32 in [0, 1] from the training images only."""
    from compsrt.calibration.data import PatchSampler, load_training_lr

    named = load_training_lr(scale, progress=False)
    sampler = PatchSampler([im for _, im in named], patch=tile, seed=seed)
    x = sampler.sample(n).numpy().astype(np.float32)
    np.save(out, x)
    sets = sorted({name.split("/")[0] for name, _ in named})
    return {"file": str(out), "shape": list(x.shape), "seed": seed, "source_sets": sets, "images": len(named)}


def quantize(py: str, fp: Path, calib: Path, mode: str, method: str, out: Path, log: Path) -> dict:
    cmd = [py, "-m", "modelopt.onnx.quantization", "--onnx_path", str(fp), "--quantize_mode", mode,
           "--calibration_method", method, "--calibration_data_path", str(calib), "--calibration_eps", "cpu",
           "--output_path", str(out)]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        p = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=out.parent)
    ok = p.returncode == 0 and out.is_file()
    return {"command": " ".join(cmd[1:]), "returncode": p.returncode, "ok": ok,
            "seconds": round(time.perf_counter() - t0, 1), "log": log.name}


def score(onnx_path: Path, datasets: list[str], scale: int, threads: int) -> dict:
    from compsrt.evaluation.benchmark import evaluate_dataset
    from compsrt.paths import benchmarks_dir
    from compsrt.runtime.backends import OrtBackend
    from compsrt.runtime.upscaler import TiledUpscaler

    backend = OrtBackend(onnx_path, threads=threads, optimization="basic")  # Q/DQ kept as written (as parity)
    up = TiledUpscaler(backend, overlap=0, margin=0, batch=8)
    out = {}
    for ds in datasets:
        r = evaluate_dataset(benchmarks_dir(), ds, scale, up.upscale_array, onnx_path.name, progress=False)
        out[ds] = {"psnr": round(r.psnr, 4), "ssim": round(r.ssim, 5), "n": r.n, "seconds": round(r.seconds, 1)}
        print(f"  {onnx_path.name} {ds}: {r.psnr:.4f} dB / {r.ssim:.5f} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)
    return out


def sizes(onnx_path: Path) -> dict:
    import onnx

    from compsrt.export.inspect import inspect_model

    r = inspect_model(onnx_path)
    proto = onnx.load(str(onnx_path), load_external_data=False)
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    fed_by_dq: dict[str, int] = {}  # which ops ModelOpt feeds through a DequantizeLinear
    for n in proto.graph.node:
        if any(producers.get(i) == "DequantizeLinear" for i in n.input):
            fed_by_dq[n.op_type] = fed_by_dq.get(n.op_type, 0) + 1
    return {"file_bytes": onnx_path.stat().st_size, "onnx_bytes": r["onnx_bytes"], "opset": r["opset"],
            "weight_bytes_by_dtype": r["weight_bytes_by_dtype"], "initializer_bytes_by_kind": r["initializer_bytes_by_kind"],
            "inputs": r["inputs"], "op_counts": r["op_counts"], "qdq_pairs": r["qdq_pairs"],
            "weight_dequantize": r["weight_dequantize"], "ops_fed_by_dq": dict(sorted(fed_by_dq.items()))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--patches", type=int, default=128, help="training patches for calibration (default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="int8_entropy,int4_awq_clip,int4_rtn_dq", help=f"comma-separated, of {list(MODES)}")
    ap.add_argument("--datasets", default="Set5,Set14,B100")
    ap.add_argument("--modelopt-python", default=os.environ.get("MODELOPT_PYTHON", "/work/venv-modelopt/bin/python"),
                    help="python of the environment with nvidia-modelopt[onnx] (default $MODELOPT_PYTHON)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--work", type=Path, required=True, help="folder for the ONNX files and calib.npy")
    ap.add_argument("--out", type=Path, required=True, help="result JSON; ModelOpt's logs go beside it")
    ap.add_argument("--reuse", action="store_true", help="keep ONNX files already in --work (re-score only)")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown --modes {bad}; choose from {list(MODES)}")
    datasets = [d for d in args.datasets.split(",") if d]
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"x{args.scale}"
    ver = subprocess.run([args.modelopt_python, "-c", "import modelopt, onnx, onnxruntime; "
                          "print(modelopt.__version__, onnx.__version__, onnxruntime.__version__)"],
                         capture_output=True, text=True)
    import onnx
    import onnxruntime
    import torch

    res = {"machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs), torch {torch.__version__}, "
                      f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__} (compsrt env)",
           "modelopt_env": dict(zip(("modelopt", "onnx", "onnxruntime"), ver.stdout.split())) or ver.stderr[-300:],
           "scale": args.scale, "tile": args.tile, "datasets": datasets,
           "scoring": "ONNX Runtime CPU (ORT_ENABLE_BASIC), runtime tiler at the graph tile, no overlap, batch 8; "
                      "Y-channel PSNR/SSIM, border = scale (compsrt.evaluation)", "graphs": {}}
    fp = args.work / f"{tag}_fp.onnx"
    if not (args.reuse and fp.is_file()):
        res["fp_export"] = export_fp(args.scale, args.tile, fp)
    calib = args.work / f"{tag}_calib.npy"
    if not (args.reuse and calib.is_file()):
        res["calibration"] = calibration_patches(args.scale, args.tile, args.patches, args.seed, calib)
    else:
        res["calibration"] = {"file": str(calib), "shape": list(np.load(calib, mmap_mode="r").shape), "reused": True}
    graphs = {"fp": fp}
    for m in modes:
        qmode, method = MODES[m]
        q = args.work / f"{tag}_modelopt_{m}.onnx"
        entry = res["graphs"].setdefault(m, {})
        if not (args.reuse and q.is_file()):
            entry["quantize"] = quantize(args.modelopt_python, fp, calib, qmode, method, q,
                                         args.out.parent / f"{args.out.stem}_{m}.quantize.log")
            print(f"{m}: {entry['quantize']}", file=sys.stderr, flush=True)
        if q.is_file():
            shutil.copyfile(fp.with_name(fp.name + ".json"), q.with_name(q.name + ".json"))  # same I/O, tile, scale
            graphs[m] = q
    for name, path in graphs.items():
        entry = res["graphs"].setdefault(name, {})
        entry["onnx"] = str(path)
        entry["sizes"] = sizes(path)
    for ds in datasets:  # one set for every graph before the next set: an interrupted run still compares
        for name, path in graphs.items():
            entry = res["graphs"][name]
            entry.setdefault("scores", {}).update(score(path, [ds], args.scale, args.threads))
            base = res["graphs"]["fp"]["scores"]
            entry["gap_db"] = {d: round(entry["scores"][d]["psnr"] - base[d]["psnr"], 4) for d in entry["scores"]}
            args.out.write_text(json.dumps(res, indent=1) + "\n")  # partial results survive an interruption
    print(json.dumps({k: v.get("gap_db") for k, v in res["graphs"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
