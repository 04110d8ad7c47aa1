"""``compsrt pipeline``: the whole job on the embedded default, in a few minutes on a CPU.

1. a short CompSRT calibration of the stand-in SwinIR-light weights with the :data:`DEMO_PRESET` the docs
   recommend for TensorRT (W4A8: INT4 weights, INT8 activations, which is what TensorRT executes; 4-bit
   activation grids would run inside INT8 anyway and cost ~0.15 dB more) on a few training images (2 patches
   of 16x16 per step, a wall-clock budget for the whole calibration; the DOBI range search always
   completes, the distillation iterations stop at the budget);
2. export of the compressed checkpoint to ONNX (Hadamard as MatMul for ONNX Runtime; when TensorRT is
   importable, the ``fused-quant`` variant for the engine, and the FP model at the same tile);
3. ONNX Runtime inference on the bundled sample image (tiled), written to ``OUT/``, and
   ``OUT/comparison.png``: bicubic | FP | compressed | amplified difference, with a zoomed crop;
4. when a TensorRT (``tensorrt`` or ``tensorrt_rtx``) is importable, the compressed engine and the FP
   engine, built the same way (same builder, tile and batch), and the compressed one's execution when a
   GPU is usable;
5. a profile of the ONNX Runtime path, the FP graph of the same tile timed the same way beside it;
6. a summary: PSNR (the compressed model against the FP model on the sample, and both against the
   ground truth on the smallest Set5 images), sizes (bits per quantized weight and per parameter, what
   stays FP), the engine beside the FP engine, latency beside FP. Also written as ``OUT/summary.json``.
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
# What the demo compresses to, and the engine variant: docs/calibration.md ("W4A8 is the engine's W4 point",
# -0.017 dB on Set5 against W4A4's -0.171) and docs/export.md ("Engine sizes": fused-quant keeps INT8
# activations in an engine 1.15x the FP one, where Q/DQ's per-site kernels make it 4.3x)
DEMO_PRESET = "W4A8"
ENGINE_VARIANT = "fused-quant"


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


@dataclass
class _Run:
    """What the steps hand each other."""

    opts: PipelineOptions
    out: Path
    summary: dict
    started: float = 0.0  # perf_counter at the start of the current step
    ckpt: Path | None = None
    onnx: Path | None = None
    engine_onnx: Path | None = None  # the compressed graph for the engine (ENGINE_VARIANT)
    fp_onnx: Path | None = None  # the FP graph at the same tile: the engine's and the profile's reference
    trt: object = None
    src: Path | None = None
    image: object = None
    ort_up: object = None
    sr_ort: np.ndarray | None = None


def _calibrate(run: _Run) -> None:
    from .calibration.distill import DistillSettings
    from .calibration.pipeline import compress
    from .calibration.qmodel import QuantConfig
    from .paths import data_root

    opts = run.opts
    run.ckpt = run.out / f"swinir_x{opts.scale}_{DEMO_PRESET.lower()}.pt"
    settings = DistillSettings(iters=opts.iters, batch=2, patch=opts.patch, dobi_batch=2, cuda_graph=False,
                               log_every=10, deadline=time.time() + opts.calib_seconds)
    with _mini_data(data_root(), opts.train_images) as data:
        meta = compress(opts.scale, QuantConfig.from_preset(DEMO_PRESET), run.ckpt, settings, data=data,
                        device=opts.device, progress=True)
    log = meta.get("log", {})
    run.summary["calibration"] = {"iters_done": log.get("iters_done"), "train_images": opts.train_images,
                                  "stopped_early": log.get("stopped_early")}
    say(str(run.ckpt), calibration_line(log, opts.iters, opts.calib_seconds, time.perf_counter() - run.started))


def _export(run: _Run) -> None:
    from .export.exporter import ExportOptions, export_checkpoint
    from .models.weights import resolve_weights

    scale, tile = run.opts.scale, run.opts.tile
    tag = f"swinir_x{scale}_{DEMO_PRESET.lower()}"
    run.onnx = run.out / f"{tag}.onnx"
    run.fp_onnx = run.out / f"swinir_x{scale}_fp.onnx"
    variants = [(run.ckpt, run.onnx, "matmul"), (resolve_weights(scale), run.fp_onnx, "matmul")]
    try:
        from .plugins.trt_compat import import_tensorrt

        run.trt = import_tensorrt()
        run.engine_onnx = run.out / f"{tag}_{ENGINE_VARIANT}.onnx"
        variants.append((run.ckpt, run.engine_onnx, ENGINE_VARIANT))
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for src, path, hadamard in variants:
            export_checkpoint(src, path, ExportOptions(tile=(tile, tile), batch=1, hadamard=hadamard))
    print("   " + ", ".join(str(p) for _, p, _ in variants))


def _infer(run: _Run) -> None:
    """ONNX Runtime (compressed), torch fake-quant and torch FP on the sample; FP and ORT on the smallest Set5."""
    from .evaluation.metrics import score_y
    from .images import load_image, save_image
    from .models.weights import load_swinir
    from .paths import benchmarks_dir
    from .runtime.backends import OrtBackend, TorchBackend, torch_checkpoint_backend
    from .runtime.compare import compare
    from .runtime.profile import SAMPLE
    from .runtime.upscaler import TiledUpscaler

    opts, out, scale = run.opts, run.out, run.opts.scale
    run.src = Path(opts.image or SAMPLE)
    img = run.image = load_image(run.src)
    run.ort_up = TiledUpscaler(OrtBackend(run.onnx))
    sr_ort = run.sr_ort = run.ort_up.upscale(img.rgb).rgb
    save_image(out / f"{run.src.stem}_x{scale}_onnxruntime.png", sr_ort)
    fp = TorchBackend(load_swinir(scale))
    sr_fp = TiledUpscaler(fp, tile=0).upscale(img.rgb).rgb
    save_image(out / f"{run.src.stem}_x{scale}_fp.png", sr_fp)
    sr_fq = TiledUpscaler(torch_checkpoint_backend(run.ckpt), tile=opts.tile).upscale(img.rgb).rgb
    run.summary["sample"] = {"image": str(run.src), "size": list(img.rgb.shape[:2][::-1]),
                             "psnr_onnxruntime_vs_fp_db": compare(sr_ort, sr_fp)["psnr_db"],
                             "psnr_fakequant_vs_fp_db": compare(sr_fq, sr_fp)["psnr_db"],
                             "psnr_onnxruntime_vs_fakequant_db": compare(sr_ort, sr_fq)["psnr_db"]}
    from .evaluation.bicubic import imresize
    from .runtime.comparison import comparison_image

    run.summary["comparison"] = comparison_image(out / "comparison.png", imresize(img.rgb, scale), sr_fp, sr_ort)
    print(f"   {out / 'comparison.png'}: bicubic | FP | compressed (ONNX Runtime) | difference x8, zoomed crop")
    bench = benchmarks_dir()
    if (bench / "Set5").is_dir():  # ground truth: the smallest Set5 images
        hr_dir, lr_dir = bench / "Set5" / "HR", bench / "Set5" / "LR_bicubic" / f"X{scale}"
        lrs = sorted(lr_dir.glob("*.png"), key=lambda p: load_image(p).rgb.size)[: opts.eval_images]
        rows = {"fp": [], "onnxruntime": []}
        for lr_p in lrs:
            lr = load_image(lr_p).rgb
            hr = load_image(hr_dir / (lr_p.stem[: -len(f"x{scale}")] + ".png")).rgb
            rows["fp"].append(score_y(TiledUpscaler(fp, tile=0).upscale(lr).rgb, hr, scale)[0])
            rows["onnxruntime"].append(score_y(run.ort_up.upscale(lr).rgb, hr, scale)[0])
        run.summary["set5_subset"] = {"images": [p.stem for p in lrs], "psnr_y_fp_db": float(np.mean(rows["fp"])),
                                      "psnr_y_onnxruntime_db": float(np.mean(rows["onnxruntime"]))}


def _engine(run: _Run) -> None:
    info = {"built": False}
    run.summary["engine"] = info
    if run.trt is None:
        print("   skipped: no TensorRT importable (pip install tensorrt-rtx-cu13==1.7.1.116, or tensorrt)")
        info["reason"] = "no TensorRT importable"
        return
    from .progress import Spinner
    from .images import save_image
    from .runtime.backends.trt import TrtBackend
    from .runtime.compare import compare
    from .runtime.engine import build_engine
    from .runtime.upscaler import TiledUpscaler

    built = {}
    for key, onnx_path in (("compressed", run.engine_onnx), ("fp", run.fp_onnx)):  # the same builder, tile, batch
        plan = onnx_path.with_suffix(".plan")
        try:
            with Spinner(f"   building {plan.name} (TensorRT's builder)"):
                built[key] = r = build_engine(onnx_path, plan, plugins="python")
        except CompsrtError as exc:
            info["error"] = f"{plan.name}: {exc}"
            say("build failed", f"{plan.name}: {exc}")
            return
        print(f"   {plan}: {r.sidecar['engine_bytes']:,} bytes ({r.sidecar['tensorrt']['module']} "
              f"{r.sidecar['tensorrt']['version']}, {r.seconds:.1f} s)")
    r, fp = built["compressed"], built["fp"]
    plan = run.engine_onnx.with_suffix(".plan")
    info.update(built=True, path=str(plan), variant=f"{DEMO_PRESET} {ENGINE_VARIANT}", bytes=r.sidecar["engine_bytes"],
                tensorrt=r.sidecar["tensorrt"], seconds=r.seconds,
                fp={"path": str(run.fp_onnx.with_suffix(".plan")), "bytes": fp.sidecar["engine_bytes"],
                    "seconds": fp.seconds})
    try:
        with TrtBackend(plan) as tb:
            sr_trt = TiledUpscaler(tb).upscale(run.image.rgb).rgb
        info["psnr_trt_vs_onnxruntime_db"] = compare(sr_trt, run.sr_ort)["psnr_db"]
        save_image(run.out / f"{run.src.stem}_x{run.opts.scale}_tensorrt.png", sr_trt)
    except CompsrtError as exc:
        info["execution"] = f"not run: {exc}"
        say("execution not run here", str(exc))


def _profile(run: _Run) -> None:
    from .runtime.backends import OrtBackend
    from .runtime.profile import fp_comparison, plot, profile, summary_text
    from .runtime.upscaler import TiledUpscaler

    h, w = run.image.rgb.shape[:2]
    label = f"onnxruntime-cpu-{DEMO_PRESET.lower()}"
    p = profile(run.ort_up, (w, h), iters=run.opts.profile_iters, warmup=1, source=run.src, label=label,
                progress=False)
    fp = profile(TiledUpscaler(OrtBackend(run.fp_onnx)), (w, h), iters=run.opts.profile_iters, warmup=1,
                 source=run.src, label="onnxruntime-cpu-fp", progress=False)  # the same tiles, the same way
    p["fp_reference"] = fp_comparison(p, fp)
    atomic_write_text(run.out / "profile_onnxruntime.json", json.dumps(p, indent=1))
    plot([p, fp], run.out / "profile_onnxruntime.png")
    print(summary_text(p))
    run.summary["profile"] = {"end_to_end_p50_ms": p["end_to_end_ms"]["p50"],
                              "compute_mean_ms": p["stages"]["compute"]["mean_ms"],
                              "images_per_s": p["throughput"]["images_per_s"], "fp_reference": p["fp_reference"]}


def _sizes(run: _Run) -> dict:
    from .models.weights import resolve_weights

    scale = run.opts.scale
    sizes = {"fp_weights_bytes": resolve_weights(scale).stat().st_size, "checkpoint_bytes": run.ckpt.stat().st_size,
             "onnx_bytes": run.onnx.stat().st_size}
    try:
        from .calibration.checkpoint import pack_file

        packed = run.out / f"swinir_x{scale}_{DEMO_PRESET.lower()}.csrt"
        sizes["packed_stats"] = pack_file(run.ckpt, packed)
        sizes["packed_bytes"] = packed.stat().st_size
    except Exception as exc:  # packing is informative only
        sizes["packed_error"] = f"{exc.__class__.__name__}: {exc}"
    if run.summary["engine"].get("built"):
        sizes["engine_bytes"] = run.summary["engine"]["bytes"]
        sizes["fp_engine_bytes"] = run.summary["engine"]["fp"]["bytes"]
    return sizes


def summary_lines(summary: dict, scale: int) -> list[str]:
    """The demo's printed summary: accuracy, sizes (what is quantized, to how many bits, what stays FP), the
    engine beside the FP engine built the same way, and the latency beside FP on the runtime measured."""
    from .runtime.profile import fp_reference_line

    sizes, s, q = summary["sizes"], summary["sample"], DEMO_PRESET
    lines = [(f"PSNR on {Path(s['image']).name} vs FP model: ONNX Runtime {q} {s['psnr_onnxruntime_vs_fp_db']:.2f} dB, "
              f"torch fake-quant {s['psnr_fakequant_vs_fp_db']:.2f} dB (ORT vs fake-quant "
              f"{s['psnr_onnxruntime_vs_fakequant_db']:.2f} dB)")]
    if "set5_subset" in summary:
        r = summary["set5_subset"]
        lines.append(f"Set5 ({', '.join(r['images'])}) Y-PSNR: FP {r['psnr_y_fp_db']:.2f} dB, "
                     f"{q} ONNX Runtime {r['psnr_y_onnxruntime_db']:.2f} dB")
    line = f"size: FP weights {sizes['fp_weights_bytes'] / 1e6:.2f} MB, ONNX {sizes['onnx_bytes'] / 1e6:.2f} MB"
    if "packed_bytes" in sizes:
        st = sizes["packed_stats"]
        fp_share = 100 * sum(v["values"] for v in st["fp_parts"].values()) / st["fp_params"]
        line += (f", packed {q} {sizes['packed_bytes'] / 1e6:.2f} MB ({st['bits_per_param']:.1f} bits per parameter: "
                 f"{st['quantized_weights']['bits_per_weight']:.2f} bits per quantized Linear weight; "
                 f"{fp_share:.0f} % of the parameters stay FP32: convs, position biases, LayerNorms, biases, "
                 "upsampler; `compsrt pack` itemises them)")
    lines.append(line)
    e = summary.get("engine", {})
    if e.get("built"):
        lines.append(f"engine ({e['tensorrt']['module']}, tile {summary['tile']}x{summary['tile']}, batch 1): "
                     f"{e['variant']} {e['bytes'] / 1e6:.2f} MB beside the FP engine built the same way "
                     f"{e['fp']['bytes'] / 1e6:.2f} MB ({e['bytes'] / e['fp']['bytes']:.2f}x)")
    p = summary["profile"]
    size = summary["sample"]["size"]
    lines.append(f"latency (ONNX Runtime, this CPU, {size[0]}x{size[1]} -> x{scale}): end-to-end p50 "
                 f"{p['end_to_end_p50_ms']:.0f} ms, compute {p['compute_mean_ms']:.0f} ms; "
                 + fp_reference_line(p["fp_reference"], what=q))
    if p["fp_reference"]["slower_than_fp"]:
        lines.append("   (compressed graphs are smaller, not faster, on ONNX Runtime's CPU kernels; they are made for "
                     "TensorRT's INT8/INT4 kernels, whose speed needs a GPU to measure)")
    lines.append(f"total {summary['seconds_total']:.0f} s")
    return lines


def _report(run: _Run) -> None:
    for line in summary_lines(run.summary, run.opts.scale):
        say(line)
    say(f"outputs in {run.out}/ (summary.json)")


STEPS = (  # (summary key, title, step)
    ("calibrate", lambda o: f"calibrate: {DEMO_PRESET} deploy (INT4 weights, INT8 activations, as TensorRT runs them), "
     f"x{o.scale}, {o.iters} iterations (budget {o.calib_seconds} s)", _calibrate),
    ("export", lambda o: f"export: ONNX, tile {o.tile}x{o.tile}, batch 1 (MatMul Hadamard for ONNX Runtime, "
     f"{ENGINE_VARIANT} for TensorRT, FP at the same tile)", _export),
    ("inference", lambda o: "ONNX Runtime inference on the sample image", _infer),
    ("engine", lambda o: f"TensorRT engines: {DEMO_PRESET} {ENGINE_VARIANT} and FP, built the same way", _engine),
    ("profile", lambda o: "profile (ONNX Runtime, CPU), FP beside it", _profile),
)


def run_pipeline(opts: PipelineOptions) -> int:
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    run = _Run(opts, out, {"scale": opts.scale, "tile": opts.tile, "steps": {}})
    n = len(STEPS) + 1
    for i, (key, title, step) in enumerate(STEPS, 1):
        run.started = _step(f"{i}/{n} {title(opts)}")
        step(run)
        run.summary["steps"][key] = time.perf_counter() - run.started
    run.summary["sizes"] = _sizes(run)
    run.summary["seconds_total"] = time.perf_counter() - t_all
    atomic_write_text(out / "summary.json", json.dumps(run.summary, indent=1, default=str))
    _step(f"{n}/{n} summary")
    _report(run)
    return 0
