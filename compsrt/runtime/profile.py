"""Latency / throughput / memory profiles of the whole upscale path, per stage, as JSON and a chart.

One iteration = one image through the full path: decode (PNG) -> tiling -> h2d -> compute -> d2h
-> stitching -> encode (PNG). Host stages are wall-clock; on a GPU h2d / compute / d2h come from
CUDA events. After ``warmup`` iterations (compilation, autotuning, caches), ``iters`` are timed.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import CompsrtError
from ..files import atomic_path
from .timing import STAGES, StageTimer

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "sample.png"


def make_input(size: tuple[int, int], folder: Path, source: Path | None = None) -> Path:
    """The source image (default: the bundled sample) resized to ``size`` and saved as PNG."""
    from PIL import Image

    from ..images import load_image

    img = load_image(source or SAMPLE)
    pil = Image.fromarray(img.rgb).resize(size, Image.BICUBIC)
    path = folder / f"input_{size[0]}x{size[1]}.png"
    pil.save(path)
    return path


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q))


def host_peak_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def machine_info() -> dict:
    info = {"host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def profile(upscaler, size=(320, 180), iters: int = 20, warmup: int = 3, source: Path | None = None,
            label: str | None = None, progress: bool = True) -> dict:
    """Run ``iters`` timed iterations (after ``warmup``) of the full path; returns the profile dict."""
    from tqdm.auto import tqdm

    if iters < 1:
        raise CompsrtError("--iters must be >= 1")
    backend = upscaler.backend
    grid = upscaler._grid(size[1], size[0])  # a bad tile is refused before any warm-up
    with tempfile.TemporaryDirectory(prefix="compsrt-profile-") as tmp:
        tmp = Path(tmp)
        src = make_input(size, tmp, source)
        dst = tmp / "output.png"
        for _ in tqdm(range(warmup), desc="warm-up", disable=not progress or warmup == 0, leave=False):
            upscaler.upscale_file(src, dst)
        per_stage = {k: [] for k in STAGES}
        e2e = []
        tiles = None
        for _ in tqdm(range(iters), desc="profile", disable=not progress, leave=False):
            timer = StageTimer()
            t0 = time.perf_counter()
            _, (ow, oh), _ = upscaler.upscale_file(src, dst, timer)
            e2e.append(time.perf_counter() - t0)
            for k, v in timer.as_dict().items():
                per_stage.setdefault(k, []).append(v)
        tiles = grid.count
    total = float(np.sum(e2e))
    ms = lambda xs: [1e3 * x for x in xs]  # noqa: E731
    stages = {k: {"mean_ms": float(np.mean(ms(v))), "p50_ms": _pct(ms(v), 50)} for k, v in per_stage.items()}
    e = ms(e2e)
    out_mp = ow * oh / 1e6
    result = {
        "label": label or backend.describe().get("label") or backend.name,
        "command": "compsrt " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name in ("compsrt", "__main__.py") else None,
        "backend": backend.describe(),
        "input": {"width": size[0], "height": size[1]},
        "output": {"width": ow, "height": oh, "megapixels": out_mp},
        "tiling": {"tile": [grid.tile_h, grid.tile_w], "overlap": grid.overlap, "margin": grid.margin,
                   "tiles": tiles, "batch": upscaler.batch},
        "iters": iters,
        "warmup": warmup,
        "stages": stages,
        "end_to_end_ms": {"p50": _pct(e, 50), "p90": _pct(e, 90), "p99": _pct(e, 99), "min": float(min(e)),
                          "max": float(max(e)), "mean": float(np.mean(e))},
        "throughput": {"images_per_s": iters / total, "output_megapixels_per_s": iters * out_mp / total},
        "memory": {**backend.memory(), "host_peak_bytes": host_peak_bytes()},
        "gpu_timing": "cuda-events" if "cuda" in str(backend.describe().get("device", "")) else "wall-clock",
        "machine": machine_info(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return result


def summary_text(p: dict) -> str:
    e = p["end_to_end_ms"]
    lines = [f"{p['label']}: {p['input']['width']}x{p['input']['height']} -> {p['output']['width']}x{p['output']['height']}"
             f" ({p['tiling']['tiles']} tile(s) {p['tiling']['tile'][1]}x{p['tiling']['tile'][0]}, batch {p['tiling']['batch']}),"
             f" {p['iters']} iters after {p['warmup']} warm-up"]
    lines.append("  stage       mean ms    p50 ms")
    for k, v in p["stages"].items():
        lines.append(f"  {k:<10} {v['mean_ms']:>8.2f}  {v['p50_ms']:>8.2f}")
    lines.append(f"  end-to-end p50 {e['p50']:.2f} ms  p90 {e['p90']:.2f}  p99 {e['p99']:.2f}  min {e['min']:.2f}  max {e['max']:.2f}")
    t = p["throughput"]
    m = p["memory"]
    dev = f"{m['device_peak_bytes'] / 2**20:.0f} MiB" if m.get("device_peak_bytes") else "n/a"
    lines.append(f"  throughput {t['images_per_s']:.2f} images/s, {t['output_megapixels_per_s']:.2f} output MP/s;"
                 f" peak device {dev}, peak host {m['host_peak_bytes'] / 2**20:.0f} MiB")
    if p.get("fp_reference"):
        lines.append("  " + fp_reference_line(p["fp_reference"]))
    return "\n".join(lines)


def fp_comparison(p: dict, fp: dict) -> dict:
    """The FP model's figures beside ``p`` (same runtime, tile, input and iterations) and their ratio."""
    ratio = p["end_to_end_ms"]["p50"] / fp["end_to_end_ms"]["p50"]
    return {"label": fp["label"], "end_to_end_p50_ms": fp["end_to_end_ms"]["p50"],
            "compute_mean_ms": fp["stages"]["compute"]["mean_ms"], "backend": fp["backend"],
            "ratio_p50": ratio, "slower_than_fp": ratio > 1}


def fp_reference_line(r: dict, what: str = "this model") -> str:
    """One line saying whether the compressed model is slower or faster than FP on the runtime measured."""
    ratio = r["ratio_p50"]
    verdict = (f"{ratio:.2f}x SLOWER than the FP model" if ratio > 1 else f"{1 / ratio:.2f}x faster than the FP model")
    return (f"{what} is {verdict} on this runtime (end-to-end p50 {ratio * r['end_to_end_p50_ms']:.1f} ms against "
            f"{r['end_to_end_p50_ms']:.1f} ms for the FP model with the same tiles)")


def load_profile(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CompsrtError(f"cannot read profile {path}: {exc}") from None
    if "end_to_end_ms" not in data:
        raise CompsrtError(f"{path} is not a profile written by `compsrt profile --json`")
    return data


def compare_text(a_path: Path, b_path: Path) -> str:
    """B relative to A: time ratios (B/A; < 1 means B is faster) and throughput ratios."""
    a, b = load_profile(a_path), load_profile(b_path)
    lines = [f"A = {a['label']} ({a_path})", f"B = {b['label']} ({b_path})",
             f"{'metric':<22} {'A':>10} {'B':>10} {'B/A':>8}"]

    def row(name, va, vb, unit=""):
        ratio = (vb / va) if va else float("nan")
        lines.append(f"{name:<22} {va:>10.3f} {vb:>10.3f} {ratio:>8.3f}{unit}")

    for k in a["stages"]:
        if k in b["stages"]:
            row(f"{k} ms (mean)", a["stages"][k]["mean_ms"], b["stages"][k]["mean_ms"])
    for q in ("p50", "p90", "p99", "min", "max"):
        row(f"end-to-end {q} ms", a["end_to_end_ms"][q], b["end_to_end_ms"][q])
    row("images/s", a["throughput"]["images_per_s"], b["throughput"]["images_per_s"])
    row("output MP/s", a["throughput"]["output_megapixels_per_s"], b["throughput"]["output_megapixels_per_s"])
    if a["input"] != b["input"]:
        lines.append(f"note: different input sizes ({a['input']} vs {b['input']})")
    return "\n".join(lines)


def plot(profiles: list[dict], path: Path, title: str | None = None) -> None:
    """Horizontal stacked bars: mean ms per stage for each profile (matplotlib, Agg)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CompsrtError("--plot needs matplotlib: pip install matplotlib==3.11.2") from None
    stages = [s for s in STAGES if any(p["stages"].get(s, {}).get("mean_ms", 0) > 0 for p in profiles)]
    colors = dict(zip(STAGES, ["#8c8c8c", "#bcbd22", "#17becf", "#d62728", "#1f77b4", "#ff7f0e", "#2ca02c"]))
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(profiles) + 1.6))
    labels = [f"{p['label']} {p['input']['width']}x{p['input']['height']}→{p['output']['width']}x{p['output']['height']}"
              for p in profiles]
    left = np.zeros(len(profiles))
    for s in stages:
        vals = np.array([p["stages"].get(s, {}).get("mean_ms", 0.0) for p in profiles])
        ax.barh(labels, vals, left=left, label=s, color=colors.get(s))
        left += vals
    for i, p in enumerate(profiles):
        ax.text(left[i], i, f" {p['end_to_end_ms']['p50']:.1f} ms p50", va="center", fontsize=8)
    ax.set_xlabel("mean ms per image (stacked stages)")
    ax.invert_yaxis()
    ax.set_xlim(0, left.max() * 1.25 if left.max() > 0 else 1)
    ax.legend(ncol=len(stages), fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    if title:
        fig.suptitle(title, fontsize=9, y=0.02)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
