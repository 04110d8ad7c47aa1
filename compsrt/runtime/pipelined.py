"""Pipelined upscaling of many files: host stages overlap the device, outputs keep input order.

Stages per image: decode -> tiling -> (h2d -> compute -> d2h per batch) -> stitching -> encode.
A pool of host threads runs decode/tiling and stitching/encode (numpy and the PNG writer's deflate release the
GIL); a pool of device workers runs the batches, each worker with its own CUDA stream on a torch
CUDA backend, so the copies and kernels of one batch overlap those of the next (one worker for a
compiled model, see :func:`_device_workers`; other backends
get one device worker: an ONNX Runtime session or a TensorRT context is not shared between
threads). At most ``depth`` images are in flight (bounded memory); results are yielded in input
order. A file that fails (corrupt, too large, unwritable) is reported in its result and skipped.

Stopping (:meth:`PipelinedUpscaler.stop`, which ``compsrt upscale`` calls on Ctrl-C): no new image is
started, the images in flight give up at their next step (before each device batch and before
encoding; eager torch and ONNX Runtime also abandon the batch running, see ``Backend.cancel``),
and :meth:`~PipelinedUpscaler.run` yields the results of those in flight, written or
``interrupted``, then ends: every file written is in a yielded result. No partial file is left (every
output is a temporary file renamed into place).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CompsrtError
from .backends.base import Interrupted
from .tiling import Stitcher, extract_tiles, pad_image
from .timing import StageTimer
from .upscaler import TiledUpscaler, upscale_alpha


@dataclass
class FileResult:
    src: Path
    dst: Path
    ok: bool
    error: str | None = None
    in_size: tuple[int, int] | None = None  # (w, h)
    out_size: tuple[int, int] | None = None
    mode: str | None = None
    seconds: float = 0.0  # submit -> written
    interrupted: bool = False  # given up because the run was stopped (nothing written)
    timer: StageTimer = field(default_factory=StageTimer)


def _device_workers(backend) -> int:
    """Two streams for eager torch on CUDA; one for a torch.compile'd model (on the H200 two threads
    calling the compiled graph halved the compute-only rate at 320x180, benchmarks/throughput/) and for
    CUDA graphs (their replays are serialised)."""
    single = getattr(backend, "compiled", False) or getattr(backend, "cuda_graph", False)
    return 2 if getattr(backend, "is_cuda", False) and not single else 1


class PipelinedUpscaler:
    """Runs a :class:`TiledUpscaler`'s work over many files with overlapping stages."""

    def __init__(self, upscaler: TiledUpscaler, host_workers: int | None = None, device_workers: int | None = None,
                 depth: int | None = None, encode=None, max_pixels: int | None = None):
        self.up = upscaler
        self.backend = upscaler.backend
        self.host_workers = host_workers or max(2, min(16, (os.cpu_count() or 2)))
        self.device_workers = device_workers or _device_workers(self.backend)
        self.depth = depth or max(2 * self.device_workers, self.host_workers)
        self.encode = encode
        self.max_pixels = max_pixels
        self._local = threading.local()
        self._stop = threading.Event()
        self._warm: dict[tuple, int] = {}
        self._warm_lock = threading.Lock()

    # ---------------------------------------------------------------------------- device side
    def _stream(self):
        """This device worker's CUDA stream (torch CUDA backends), created on first use."""
        s = getattr(self._local, "stream", None)
        if s is None and getattr(self.backend, "is_cuda", False):
            import torch

            s = self._local.stream = torch.cuda.Stream(self.backend.device)
        return s

    def stop(self) -> None:
        """Start no new image; images in flight give up at their next step, the batch running on the device
        where its backend can (:meth:`~compsrt.runtime.backends.Backend.cancel`). Thread- and signal-safe."""
        self._stop.set()
        self.backend.cancel()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Interrupted("interrupted")

    def _run_batch(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:
        self._check_stop()
        if getattr(self.backend, "compiled", False):
            with self._warm_lock:  # torch.compile traces a new shape once, not from two threads at a time
                first = self._warm.get(x.shape, 0) < 2
                if first:
                    self._warm[x.shape] = self._warm.get(x.shape, 0) + 1
                    return self._run_on_stream(x, timer)
        return self._run_on_stream(x, timer)

    def _run_on_stream(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:
        s = self._stream()
        if s is None:
            return self.backend.run(x, timer)
        import torch

        with torch.cuda.stream(s):
            return self.backend.run(x, timer)

    # ---------------------------------------------------------------------------- one image
    def _process(self, src: Path, dst: Path, devpool: ThreadPoolExecutor) -> FileResult:
        from ..encoding import load_image_any, save_image_any
        from ..images import SAVE_FORMATS

        t0 = time.perf_counter()
        res = FileResult(src, dst, False)
        timer = res.timer
        try:
            self._check_stop()
            if dst.suffix.lower() not in SAVE_FORMATS:
                raise CompsrtError(f"cannot write {dst}: use one of the extensions {', '.join(SAVE_FORMATS)}")
            with timer.stage("decode"):
                image = load_image_any(src, limit=self.max_pixels)
            rgb = image.rgb
            h, w = rgb.shape[:2]
            sixteen = rgb.dtype == np.uint16
            with timer.stage("tiling"):
                grid = self.up._grid(h, w)
                padded = pad_image(rgb, grid.padded_h, grid.padded_w)
                origins = grid.origins()
                chunks = [origins[i : i + self.up.batch] for i in range(0, len(origins), self.up.batch)]
            futures = []
            for chunk in chunks:  # tiles of batch k+1 are cut while batch k runs
                with timer.stage("tiling"):
                    x = extract_tiles(padded, grid, chunk)
                futures.append(devpool.submit(self._run_batch, x, timer))
            with timer.stage("stitching"):
                stitch = Stitcher(grid, self.backend.scale, keep_float=sixteen)
            for chunk, fut in zip(chunks, futures):
                y = fut.result()
                with timer.stage("stitching"):
                    for o, t in zip(chunk, y):
                        stitch.add(o, t)
            with timer.stage("stitching"):
                out = stitch.result_u8
                if sixteen:
                    out = np.round(np.clip(stitch.result_f32, 0.0, 1.0) * 65535.0).astype(np.uint16)
                alpha = upscale_alpha(image.alpha, self.backend.scale)
            self._check_stop()
            with timer.stage("encode"):
                save_image_any(dst, out, alpha, self.encode)
            res.ok, res.in_size, res.out_size, res.mode = True, (w, h), (out.shape[1], out.shape[0]), image.mode
        except Interrupted as exc:
            res.error, res.interrupted = f"{src}: {exc}", True
        except CompsrtError as exc:
            res.error = str(exc)
        except (OSError, ValueError, RuntimeError) as exc:  # a write or a backend failure: this file only
            res.error = f"{src}: {exc.__class__.__name__}: {exc}"
        res.seconds = time.perf_counter() - t0
        return res

    # ---------------------------------------------------------------------------- many images
    def run(self, pairs: Iterable[tuple[Path, Path]]) -> Iterator[FileResult]:
        """Yield one :class:`FileResult` per (src, dst) pair, in input order; after :meth:`stop`, only those
        of the images that were in flight (see the module docstring)."""
        self._stop.clear()
        hostpool = ThreadPoolExecutor(self.host_workers, thread_name_prefix="compsrt-host")
        devpool = ThreadPoolExecutor(self.device_workers, thread_name_prefix="compsrt-device")
        window: deque[Future] = deque()
        try:
            for src, dst in pairs:
                if self._stop.is_set():
                    break
                window.append(hostpool.submit(self._process, Path(src), Path(dst), devpool))
                while len(window) >= self.depth:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        except BaseException:  # Ctrl-C or the consumer stopped: finish what runs, start nothing new
            self._stop.set()
            for f in window:
                f.cancel()
            raise
        finally:
            hostpool.shutdown(wait=True, cancel_futures=True)
            devpool.shutdown(wait=True, cancel_futures=True)

    def compute_only(self, rgbs: list[np.ndarray], repeat: int = 1) -> float:
        """Seconds the device stage alone takes for the batches of ``rgbs`` (same workers, streams)."""
        batches = []
        for rgb in rgbs:
            grid = self.up._grid(*rgb.shape[:2])
            padded = pad_image(rgb, grid.padded_h, grid.padded_w)
            origins = grid.origins()
            batches += [extract_tiles(padded, grid, origins[i : i + self.up.batch])
                        for i in range(0, len(origins), self.up.batch)]
        with ThreadPoolExecutor(self.device_workers) as devpool:
            t0 = time.perf_counter()
            futs = [devpool.submit(self._run_batch, x, StageTimer()) for _ in range(repeat) for x in batches]
            for f in futs:
                f.result()
            return time.perf_counter() - t0


def make_inputs(size: tuple[int, int], n: int, folder: Path, source: Path | None = None) -> list[Path]:
    """``n`` PNGs of ``size``: shifted crops of ``source`` (default: the bundled sample), so content varies."""
    from PIL import Image

    from ..images import load_image
    from .profile import SAMPLE

    base = load_image(source or SAMPLE).rgb
    h, w = base.shape[:2]
    rng = np.random.default_rng(0)
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        p = folder / f"in_{i:04d}.png"
        Image.fromarray(np.ascontiguousarray(base[y : y + ch, x : x + cw])).resize(size, Image.BICUBIC).save(p)
        paths.append(p)
    return paths


def throughput_profile(upscaler: TiledUpscaler, size=(320, 180), images: int = 32, source: Path | None = None,
                       encode=None, before_encode=None, host_workers: int | None = None,
                       device_workers: int | None = None, warmup: int = 2, sequential: bool = True) -> dict:
    """Folder throughput of the pipelined path against the device stage alone and the sequential path.

    * ``compute_only``: the same batches through the device workers, no host stage at all (the bound);
    * ``pipelined``: decode -> ... -> encode of ``images`` files with overlapping stages;
    * ``sequential``: :meth:`TiledUpscaler.upscale_file` one image after another with ``encode`` (its
      per-image times are the single-image latency) and, as the *before* figure, with
      ``before_encode`` (default: Pillow's zlib level 6, the encoder before the pipelined path).
    """
    import tempfile

    from ..encoding import EncodeOptions
    from ..images import load_image

    encode = encode or EncodeOptions()
    before_encode = before_encode or EncodeOptions(png_level=6, png_writer="pillow")
    pipe = PipelinedUpscaler(upscaler, host_workers=host_workers, device_workers=device_workers, encode=encode)
    result: dict = {"images": images, "input": {"width": size[0], "height": size[1]}, "host_workers": pipe.host_workers,
                    "device_workers": pipe.device_workers, "depth": pipe.depth, "encode": dict(vars(encode)),
                    "before_encode": dict(vars(before_encode))}
    with tempfile.TemporaryDirectory(prefix="compsrt-throughput-") as tmp:
        tmp = Path(tmp)
        srcs = make_inputs(size, images, tmp / "in", source)
        for _ in range(warmup):  # compilation and autotuning, one thread at a time
            upscaler.upscale_file(srcs[0], tmp / "warm.png", encode=encode)
        rgbs = [load_image(p).rgb for p in srcs]
        pipe.compute_only(rgbs[: max(1, min(4, images))])  # warm the device workers' streams
        secs = min(pipe.compute_only(rgbs) for _ in range(2))  # the bound: the better of two passes (on the
        # H200 the first pass after torch.compile's warm-up ran at times at half the rate of the second)
        result["compute_only"] = {"seconds": secs, "images_per_s": images / secs}
        pairs = [(p, tmp / "out" / p.name) for p in srcs]
        t0 = time.perf_counter()
        res = list(pipe.run(pairs))
        secs = time.perf_counter() - t0
        failed = [r.error for r in res if not r.ok]
        if failed:
            raise CompsrtError(f"pipelined run failed on {len(failed)} images: {failed[0]}")
        stage_ms = {}
        for r in res:
            for k, v in r.timer.as_dict().items():
                stage_ms[k] = stage_ms.get(k, 0.0) + 1e3 * v / images
        result["pipelined"] = {"seconds": secs, "images_per_s": images / secs,
                               "stage_ms_per_image": stage_ms,  # summed over threads: work, not wall time
                               "vs_compute_only": (images / secs) / result["compute_only"]["images_per_s"]}
        if sequential:
            for key, enc in (("sequential", encode), ("sequential_before", before_encode)):
                lat = []
                t0 = time.perf_counter()
                for s, d in pairs:
                    t1 = time.perf_counter()
                    upscaler.upscale_file(s, d, encode=enc)
                    lat.append(time.perf_counter() - t1)
                secs = time.perf_counter() - t0
                ms = 1e3 * np.asarray(lat)
                result[key] = {"seconds": secs, "images_per_s": images / secs, "png_level": enc.png_level,
                               "png_writer": enc.png_writer,
                               "latency_ms": {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
                                              "mean": float(ms.mean()), "max": float(ms.max())}}
            result["speedup_vs_before"] = result["pipelined"]["images_per_s"] / result["sequential_before"]["images_per_s"]
        out = load_image(pairs[0][1]).rgb
        result["output"] = {"width": out.shape[1], "height": out.shape[0]}
    return result


def throughput_text(r: dict) -> str:
    i, o = r["input"], r["output"]
    lines = [f"{r.get('label', '')} {i['width']}x{i['height']} -> {o['width']}x{o['height']}, {r['images']} images, "
             f"{r['host_workers']} host / {r['device_workers']} device workers",
             f"  compute only     {r['compute_only']['images_per_s']:8.2f} images/s",
             f"  pipelined        {r['pipelined']['images_per_s']:8.2f} images/s "
             f"({r['pipelined']['vs_compute_only']:.2f}x compute-only, PNG level {r['encode']['png_level']} "
             f"{r['encode']['png_writer']})"]
    for key, name in (("sequential", "sequential"), ("sequential_before", "before (seq.)")):
        if key in r:
            s = r[key]
            lines.append(f"  {name:<16} {s['images_per_s']:8.2f} images/s, latency p50 {s['latency_ms']['p50']:.1f} ms "
                         f"p99 {s['latency_ms']['p99']:.1f} ms (PNG level {s['png_level']} {s['png_writer']})")
    if "speedup_vs_before" in r:
        lines.append(f"  pipelined / before: {r['speedup_vs_before']:.2f}x")
    return "\n".join(lines)
