"""``compsrt pipeline``: the whole job on the embedded default, in a few minutes on a CPU.

1. a short CompSRT calibration (4-bit deploy mode) of the stand-in SwinIR-light weights on a few
   training images (2 patches of 16x16 per step, a wall-clock budget for the whole calibration; the DOBI range search always completes, the
   distillation iterations stop at the budget);
2. export of the compressed checkpoint to ONNX (Hadamard as MatMul for ONNX Runtime; a plugin
   variant too when TensorRT is importable);
3. ONNX Runtime inference on the bundled sample image (tiled), written to ``OUT/``;
4. an engine build when a TensorRT (``tensorrt`` or ``tensorrt_rtx``) is importable, and its
   execution when a GPU is usable;
5. a profile of the ONNX Runtime path;
6. a summary: PSNR (the compressed model against the FP model on the sample, and both against the
   ground truth on the smallest Set5 images), sizes, latency. Also written as ``OUT/summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import CompsrtError
from .files import atomic_write_text

TRAIN_SET = "Kodak"


def _step(name: str):
    print(f"== {name}", flush=True)
    return time.perf_counter()


def say(what: str, detail: str = "") -> None:
    """One indented console line, never cut: a shortened message loses the fix it names."""
    print(f"   {what}{': ' + detail if detail else ''}", flush=True)


def calibration_line(log: dict, iters: int, budget_s: float, seconds: float) -> str:
    """The calibration result, saying so when the time budget (not --iters) ended it."""
    done = log.get("iters_done")
    line = f"{done} iterations, {seconds:.0f} s"
    if log.get("stopped_early"):
        line += (f"; stopped early on the {budget_s:g} s budget after {done} of {iters} iterations, so the result "
                 "depends on this machine's speed (raise --calib-seconds for all of them)")
    return line


@contextlib.contextmanager
def _mini_data(root: Path, n: int) -> Iterator[Path]:
    """A temporary data root linking the first ``n`` images of ``train/Kodak`` (never copied)."""
    src = root / "train" / TRAIN_SET
    files = sorted(src.glob("*.png"))[:n]
    if not files:
        raise CompsrtError(f"no training images in {src}; set COMPSRT_DATA to the folder holding train/")
    with tempfile.TemporaryDirectory(prefix="compsrt-pipeline-data-") as tmp:
        (Path(tmp) / "train" / TRAIN_SET).mkdir(parents=True)
        for f in files:
            (Path(tmp) / "train" / TRAIN_SET / f.name).symlink_to(f.resolve())
        yield Path(tmp)


@dataclass
class PipelineOptions:
    out: Path = Path("outputs/pipeline")
    scale: int = 4
    iters: int = 50  # calibration iterations
    calib_seconds: float = 150  # wall-clock budget of the whole calibration, DOBI ranges included
    patch: int = 16  # calibration patch size in LR pixels
    train_images: int = 3
    eval_images: int = 2  # smallest Set5 images scored against ground truth
    profile_iters: int = 3
    device: str = "auto"  # calibration device
    tile: int = 64
    image: Path | None = None  # default: the bundled sample


def run_pipeline(opts: PipelineOptions) -> int:
    from .images import load_image, save_image
    from .models.weights import load_swinir, resolve_weights
    from .paths import benchmarks_dir, data_root
    from .runtime.backends import OrtBackend, TorchBackend, torch_checkpoint_backend
    from .runtime.profile import SAMPLE, plot, profile, summary_text
    from .runtime.upscaler import TiledUpscaler

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    scale, tile = opts.scale, opts.tile
    t_all = time.perf_counter()
    summary: dict = {"scale": scale, "tile": tile, "steps": {}}
    from .calibration.distill import DistillSettings
    from .calibration.pipeline import compress
    from .calibration.qmodel import QuantConfig
    from .runtime.compare import compare
    from .export.exporter import ExportOptions, export_checkpoint

    # 1. calibration
    t = _step(f"1/6 calibrate: 4-bit deploy, x{scale}, {opts.iters} iterations (budget {opts.calib_seconds} s)")
    ckpt = out / f"swinir_x{scale}_w4a4.pt"
    settings = DistillSettings(iters=opts.iters, batch=2, patch=opts.patch, dobi_batch=2, cuda_graph=False, log_every=10,
                               deadline=time.time() + opts.calib_seconds)
    with _mini_data(data_root(), opts.train_images) as data:
        meta = compress(scale, QuantConfig(bits=4, mode="deploy"), ckpt, settings, data=data, device=opts.device,
                        progress=True)
    log = meta.get("log", {})
    summary["steps"]["calibrate"] = time.perf_counter() - t
    summary["calibration"] = {"iters_done": log.get("iters_done"), "train_images": opts.train_images,
                              "stopped_early": log.get("stopped_early")}
    say(str(ckpt), calibration_line(log, opts.iters, opts.calib_seconds, summary["steps"]["calibrate"]))

    # 2. export
    t = _step(f"2/6 export: ONNX, tile {tile}x{tile}, batch 1")
    onnx_path = out / f"swinir_x{scale}_w4a4.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_checkpoint(ckpt, onnx_path, ExportOptions(tile=(tile, tile), batch=1, hadamard="matmul"))
    trt = None
    try:
        from .plugins.trt_compat import import_tensorrt

        trt = import_tensorrt()
    except ImportError:
        pass
    plugin_onnx = None
    if trt is not None:
        plugin_onnx = out / f"swinir_x{scale}_w4a4_plugin.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_checkpoint(ckpt, plugin_onnx, ExportOptions(tile=(tile, tile), batch=1, hadamard="plugin"))
    summary["steps"]["export"] = time.perf_counter() - t
    print(f"   {onnx_path}" + (f", {plugin_onnx}" if plugin_onnx else ""))

    # 3. inference on the sample: ONNX Runtime (compressed), torch fake-quant, torch FP
    t = _step("3/6 ONNX Runtime inference on the sample image")
    src = Path(opts.image or SAMPLE)
    img = load_image(src)
    ort_up = TiledUpscaler(OrtBackend(onnx_path))
    sr_ort = ort_up.upscale(img.rgb).rgb
    save_image(out / f"{src.stem}_x{scale}_onnxruntime.png", sr_ort)
    fp = TorchBackend(load_swinir(scale))
    sr_fp = TiledUpscaler(fp, tile=0).upscale(img.rgb).rgb
    save_image(out / f"{src.stem}_x{scale}_fp.png", sr_fp)
    fq = torch_checkpoint_backend(ckpt)
    sr_fq = TiledUpscaler(fq, tile=tile).upscale(img.rgb).rgb
    summary["sample"] = {"image": str(src), "size": list(img.rgb.shape[:2][::-1]),
                         "psnr_onnxruntime_vs_fp_db": compare(sr_ort, sr_fp)["psnr_db"],
                         "psnr_fakequant_vs_fp_db": compare(sr_fq, sr_fp)["psnr_db"],
                         "psnr_onnxruntime_vs_fakequant_db": compare(sr_ort, sr_fq)["psnr_db"]}
    # ground truth: the smallest Set5 images
    bench = benchmarks_dir()
    if (bench / "Set5").is_dir():
        from .evaluation.metrics import score_y

        hr_dir, lr_dir = bench / "Set5" / "HR", bench / "Set5" / "LR_bicubic" / f"X{scale}"
        lrs = sorted(lr_dir.glob("*.png"), key=lambda p: load_image(p).rgb.size)[: opts.eval_images]
        rows = {"fp": [], "onnxruntime": []}
        for lr_p in lrs:
            lr = load_image(lr_p).rgb
            hr = load_image(hr_dir / (lr_p.stem[: -len(f"x{scale}")] + ".png")).rgb
            rows["fp"].append(score_y(TiledUpscaler(fp, tile=0).upscale(lr).rgb, hr, scale)[0])
            rows["onnxruntime"].append(score_y(ort_up.upscale(lr).rgb, hr, scale)[0])
        summary["set5_subset"] = {"images": [p.stem for p in lrs], "psnr_y_fp_db": float(np.mean(rows["fp"])),
                                  "psnr_y_w4a4_onnxruntime_db": float(np.mean(rows["onnxruntime"]))}
    summary["steps"]["inference"] = time.perf_counter() - t

    # 4. engine
    t = _step("4/6 TensorRT engine")
    engine_info = {"built": False}
    if trt is None:
        print("   skipped: no TensorRT importable (pip install tensorrt-rtx-cu13==1.7.1.116, or tensorrt)")
        engine_info["reason"] = "no TensorRT importable"
    else:
        from .runtime.backends.trt import TrtBackend
        from .runtime.engine import build_engine

        plan = out / f"swinir_x{scale}_w4a4.plan"
        try:
            from .cli.args import Spinner

            with Spinner(f"   building {plan.name} (TensorRT's builder)"):
                r = build_engine(plugin_onnx, plan, plugins="python")
            engine_info = {"built": True, "path": str(plan), "bytes": r.sidecar["engine_bytes"],
                           "tensorrt": r.sidecar["tensorrt"], "seconds": r.seconds}
            print(f"   {plan}: {r.sidecar['engine_bytes']:,} bytes ({r.sidecar['tensorrt']['module']} "
                  f"{r.sidecar['tensorrt']['version']}, {r.seconds:.1f} s)")
            try:
                with TrtBackend(plan) as tb:
                    sr_trt = TiledUpscaler(tb).upscale(img.rgb).rgb
                engine_info["psnr_trt_vs_onnxruntime_db"] = compare(sr_trt, sr_ort)["psnr_db"]
                save_image(out / f"{src.stem}_x{scale}_tensorrt.png", sr_trt)
            except CompsrtError as exc:
                engine_info["execution"] = f"not run: {exc}"
                say("execution not run here", str(exc))
        except CompsrtError as exc:
            engine_info["error"] = str(exc)
            say("build failed", str(exc))
    summary["engine"] = engine_info
    summary["steps"]["engine"] = time.perf_counter() - t

    # 5. profile
    t = _step("5/6 profile (ONNX Runtime, CPU)")
    w, h = img.rgb.shape[1], img.rgb.shape[0]
    p = profile(ort_up, (w, h), iters=opts.profile_iters, warmup=1, source=src, label="onnxruntime-cpu-w4a4", progress=False)
    atomic_write_text(out / "profile_onnxruntime.json", json.dumps(p, indent=1))
    plot([p], out / "profile_onnxruntime.png")
    print(summary_text(p))
    summary["profile"] = {"end_to_end_p50_ms": p["end_to_end_ms"]["p50"],
                          "compute_mean_ms": p["stages"]["compute"]["mean_ms"],
                          "images_per_s": p["throughput"]["images_per_s"]}
    summary["steps"]["profile"] = time.perf_counter() - t

    # 6. summary
    sizes = {"fp_weights_bytes": resolve_weights(scale).stat().st_size, "checkpoint_bytes": ckpt.stat().st_size,
             "onnx_bytes": onnx_path.stat().st_size}
    try:
        from .calibration.checkpoint import pack_file

        stats = pack_file(ckpt, out / f"swinir_x{scale}_w4a4.csrt")
        sizes["packed_bytes"] = (out / f"swinir_x{scale}_w4a4.csrt").stat().st_size
        sizes["packed_stats"] = stats
    except Exception as exc:  # packing is informative only
        sizes["packed_error"] = f"{exc.__class__.__name__}: {exc}"
    if engine_info.get("built"):
        sizes["engine_bytes"] = engine_info["bytes"]
    summary["sizes"] = sizes
    summary["seconds_total"] = time.perf_counter() - t_all
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    _step("6/6 summary")
    s = summary["sample"]
    print(f"   PSNR on {Path(s['image']).name} vs FP model: ONNX Runtime W4A4 {s['psnr_onnxruntime_vs_fp_db']:.2f} dB, "
          f"torch fake-quant {s['psnr_fakequant_vs_fp_db']:.2f} dB (ORT vs fake-quant {s['psnr_onnxruntime_vs_fakequant_db']:.2f} dB)")
    if "set5_subset" in summary:
        q = summary["set5_subset"]
        print(f"   Set5 ({', '.join(q['images'])}) Y-PSNR: FP {q['psnr_y_fp_db']:.2f} dB, "
              f"W4A4 ONNX Runtime {q['psnr_y_w4a4_onnxruntime_db']:.2f} dB")
    line = f"   size: FP weights {sizes['fp_weights_bytes'] / 1e6:.2f} MB, ONNX {sizes['onnx_bytes'] / 1e6:.2f} MB"
    if "packed_bytes" in sizes:
        line += f", packed W4 {sizes['packed_bytes'] / 1e6:.2f} MB"
    if "engine_bytes" in sizes:
        line += f", engine {sizes['engine_bytes'] / 1e6:.2f} MB"
    print(line)
    print(f"   latency (ONNX Runtime, this CPU, {w}x{h} -> x{scale}): end-to-end p50 "
          f"{summary['profile']['end_to_end_p50_ms']:.0f} ms, compute {summary['profile']['compute_mean_ms']:.0f} ms")
    print(f"   total {summary['seconds_total']:.0f} s; outputs in {out}/ (summary.json)")
    return 0
