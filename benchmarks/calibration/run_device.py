"""GPU runner: calibrate several CompSRT configurations as parallel processes on one GPU, evaluate each
on Set5 / Set14 / B100 beside the FP model, pack it, and write one JSON per configuration.

Calibration reads only the LR training cache (T91, BSD200, Kodak, DIV2K calib); benchmarks are only
scored, never used to calibrate or select (the last iteration is kept).

usage (on the device, from the repo root, with COMPSRT_DATA=.carry/data COMPSRT_CACHE=.carry/cache):
  python -m benchmarks.calibration.run_device --scale 4 --out $OUT/res \
      --first deploy:4:- --configs paper:4:- paper:3:- ... --jobs 5 --budget 480
A config is MODE:BITS:PRUNE[:clamp][@ITERS]: BITS is 2, 3, 4 or 8 (W = A), WxAy (deploy: W4A8) or a preset name
(deploy: W2A8-attn4, compsrt.calibration.config.PRESETS); PRUNE '-' for none, 0.4 or 2:4; ``:clamp`` (paper
mode) holds the codes to b bits, as --clamp-codes does for all; @ITERS overrides --iters for that config.
``--first`` runs alone (timed), the rest in parallel afterwards; every training loop stops at the shared
deadline (iterations done are recorded). ``--onnx`` also exports each model (plugin variant, `compsrt inspect`
sizes and per-site bits) and runs `compsrt export-parity` on ``--parity-dataset``
with ONNX Runtime on the CPU (``--parity-threads`` each); ``--onnx-from DIR`` runs only those checks, on the
packed models of a finished result folder.
A table can take several sessions: configurations (and the FP row) whose JSON in ``--out`` is complete (all
their iterations done, every dataset scored) are skipped, so rerunning the same command with the
earlier results copied into ``--out`` resumes it (``--redo``: run them again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from compsrt.calibration.config import PRESETS, QuantConfig
from compsrt.calibration.distill import LR_MODES, STEP_FLOOR
from compsrt.errors import CompsrtError


def parse(c: str, clamp_codes: bool = False) -> tuple[QuantConfig, int | None]:
    """(config, iterations or None) of MODE:BITS:PRUNE[:clamp][@ITERS]. ``:clamp`` holds that paper config's
    codes to b bits, as ``--clamp-codes`` does for every paper config, so that one call can train both."""
    body, _, iters = c.partition("@")
    clamp = body.endswith(":clamp")
    parts = body.removesuffix(":clamp").split(":", 2)
    if len(parts) != 3 or not (iters.isdigit() or not iters) or (clamp and not parts[1].isdigit()):
        raise ValueError(f"config {c!r}: expected MODE:BITS:PRUNE[:clamp][@ITERS] (:clamp with numeric BITS), "
                         "e.g. deploy:4:-, deploy:4:2:4@1000 or paper:4:-:clamp")
    mode, bits, prune = parts
    prune = None if prune == "-" else prune
    n = int(iters) if iters else None
    if bits.isdigit():
        return QuantConfig(int(bits), mode, prune, clamp_codes=clamp_codes or clamp), n
    if bits in PRESETS:
        return QuantConfig.from_preset(bits, mode, prune), n
    w, _, a = bits.upper().removeprefix("W").partition("A")
    return QuantConfig(int(w), mode, prune, wbits=int(w), abits=int(a)), n


def config_tag(args, c: str) -> str:
    """The result file's stem of configuration ``c`` under ``args`` (as the worker writes it)."""
    return _tag(args, parse(c, args.clamp_codes)[0])


def _tag(args, cfg: QuantConfig) -> str:
    return (f"x{args.scale}_{cfg.tag}" + ("" if args.lr_mode == "auto" else f"_lr{args.lr_mode}")
            + ("" if args.lr is None else f"_lr{args.lr:g}"))


def complete(args, c: str) -> bool:
    """Whether ``--out`` holds the finished result of configuration ``c`` ("fp" for the FP row): every
    dataset scored and, for a calibrated configuration, all its iterations done (``@ITERS`` or ``--iters``;
    a run stopped at a deadline is not finished)."""
    fp = c == "fp"
    cfg, iters = (None, None) if fp else parse(c, args.clamp_codes)
    path = Path(args.out) / f"{f'x{args.scale}_fp32' if fp else _tag(args, cfg)}.json"
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    scored = set(args.datasets.split(",")) <= set(res.get("eval", {}))
    return scored and (fp or res.get("calibration", {}).get("iters_done") == (iters or args.iters))


def scores(model, args, name: str):
    """(dataset, summary) for each of ``args.datasets``: whole images, FP32 matmuls (no TF32)."""
    import torch

    from compsrt.evaluation.benchmark import evaluate_dataset
    from compsrt.paths import benchmarks_dir
    from compsrt.runtime.backends import TorchBackend
    from compsrt.runtime.upscaler import TiledUpscaler

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    upscale = TiledUpscaler(TorchBackend(model.to(args.device), args.device), tile=0).upscale_array
    for ds in args.datasets.split(","):
        yield ds, evaluate_dataset(benchmarks_dir(), ds, args.scale, upscale, name, progress=False).summary()


def worker(args) -> None:
    import torch

    from compsrt.calibration.checkpoint import load_compressed_model, pack_file
    from compsrt.calibration.distill import DistillSettings
    from compsrt.calibration.pipeline import compress

    cfg, iters = parse(args.worker, args.clamp_codes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = config_tag(args, args.worker)
    res = {"scale": args.scale, "config": cfg.to_dict(), "tag": tag}
    ckpt = out / f"{tag}.pt"
    st = DistillSettings(iters=args.iters if iters is None else iters, seed=args.seed, deadline=args.deadline or None,
                         cuda_graph=not args.eager, fused_quantizers=not args.unfused, batch=args.batch,
                         dobi_batch=args.dobi_batch, step_floor=args.step_floor,
                         lr_mode=args.lr_mode, compile=False if args.no_compile else None,
                         **({} if args.lr is None else {"lr": args.lr}),
                         bf16=False if args.no_bf16 else None)
    t0 = time.time()
    meta = compress(args.scale, cfg, ckpt, st, device=args.device, progress=False)
    res["calibration"] = meta["log"]
    res["calibration_wall_s"] = time.time() - t0
    res["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    res["pack"] = pack_file(ckpt, out / f"{tag}.csrt")
    (out / f"{tag}.json").write_text(json.dumps(res, indent=1))
    model, _ = load_compressed_model(ckpt)
    res["eval"] = {}
    for ds, summary in scores(model, args, tag):
        res["eval"][ds] = summary
        (out / f"{tag}.json").write_text(json.dumps(res, indent=1))
    if args.onnx and exportable(res):
        res["onnx"] = onnx_checks(out / f"{tag}.csrt", args)
        (out / f"{tag}.json").write_text(json.dumps(res, indent=1))
    ckpt.unlink()  # the packed file holds the same model bit-exactly and is smaller
    print(json.dumps({"tag": tag, "eval": {k: [v["psnr"], v["ssim"]] for k, v in res["eval"].items()},
                      "iters": meta["log"]["iters_done"], "s": res["calibration_wall_s"]}), flush=True)


def exportable(res: dict) -> bool:
    """Whether a result's model has ONNX checks: only deploy mode exports (paper mode is a simulation)."""
    return res["config"]["mode"] == "deploy"


def onnx_checks(packed: Path, args) -> dict:
    """Plugin-variant export (the TensorRT graph: sizes and per-site bits from `compsrt inspect`) and the ONNX
    Runtime parity on ``args.parity_dataset`` (matmul variant, forced site check), both on the CPU."""
    import torch

    from compsrt.export.exporter import ExportOptions, export_checkpoint
    from compsrt.export.inspect import inspect_model
    from compsrt.runtime.parity import run_parity

    torch.set_num_threads(args.parity_threads)
    t0 = time.time()
    onnx_path = packed.with_suffix(".onnx")
    res = export_checkpoint(packed, onnx_path, ExportOptions(tile=(64, 64), hadamard="plugin"))
    r = inspect_model(onnx_path)
    out = {"tile": [64, 64], "hadamard": "plugin", "file_bytes": onnx_path.stat().st_size, "opset": res.sidecar["opset"],
           "weight_storage": res.sidecar["precision"]["weight_storage"], "seconds_export": time.time() - t0,
           **{k: r[k] for k in ("onnx_bytes", "weight_bytes_by_dtype", "initializer_bytes_by_kind", "qdq_pairs",
                                "weight_dequantize", "precision_label")},
           "quant_bits": {k: v for k, v in r["quant_bits"].items() if k != "per_site"}}
    onnx_path.unlink()
    res.sidecar_path.unlink()
    t0 = time.time()
    p = run_parity(packed, (64, 64), args.parity_dataset, floor=False, threads=args.parity_threads)
    p.pop("images", None)
    if p.get("site_check"):
        p["site_check"].pop("per_site", None)
    out["parity"] = p
    out["seconds_parity"] = time.time() - t0
    return out


def onnx_from(args) -> None:
    """``--onnx`` checks after the fact, for every ``x*.csrt`` of a result folder (e.g. on a CPU machine)."""
    for packed in sorted(Path(args.onnx_from).glob("x*.csrt")):
        path = packed.with_suffix(".json")
        res = json.loads(path.read_text())
        if not exportable(res):
            print(f"skip {res['tag']}: {res['config']['mode']} mode does not export", flush=True)
            continue
        res["onnx"] = onnx_checks(packed, args)
        res["onnx"]["machine"] = platform.processor() or platform.machine()
        path.write_text(json.dumps(res, indent=1))
        p = res["onnx"]["parity"]
        print(json.dumps({"tag": res["tag"], "onnx_bytes": res["onnx"]["file_bytes"], "psnr_diff": p["psnr_diff"],
                          "forced": p["site_check"]["forced"]}), flush=True)


def fp_eval(args) -> None:
    from compsrt.models.weights import load_swinir

    res = {"scale": args.scale, "tag": f"x{args.scale}_fp32", "eval": dict(scores(load_swinir(args.scale), args, "fp32"))}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"x{args.scale}_fp32.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res), flush=True)


def pending(args) -> list[str]:
    """"fp" and the configurations (``--first``, then ``--configs``) still to run, printing what is skipped."""
    todo = []
    for c in ["fp"] + ([args.first] if args.first else []) + list(args.configs):
        if not args.redo and complete(args, c):
            print(f"skip {c}: its result in {args.out} is complete", flush=True)
        else:
            todo.append(c)
    return todo


def launch(args, extra: list[str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.calibration.run_device", "--scale", str(args.scale), "--out", args.out, "--iters", str(args.iters),
           "--datasets", args.datasets, "--seed", str(args.seed), "--device", args.device,
           "--batch", str(args.batch), "--dobi-batch", str(args.dobi_batch), "--step-floor", str(args.step_floor),
           "--lr-mode", args.lr_mode] + ([] if args.lr is None else ["--lr", str(args.lr)]) \
        + (["--eager"] if args.eager else []) \
        + (["--unfused"] if args.unfused else []) \
        + (["--no-compile"] if args.no_compile else []) + (["--no-bf16"] if args.no_bf16 else []) \
        + (["--clamp-codes"] if args.clamp_codes else []) \
        + (["--onnx", "--parity-dataset", args.parity_dataset, "--parity-threads", str(args.parity_threads)] if args.onnx else []) \
        + extra
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=REPO,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def stop_workers(workers: dict[subprocess.Popen, str], grace: float = 10.0) -> list[str]:
    """Terminate the workers still running (SIGKILL after ``grace`` s) and return their configs: a runner stopped
    by ``timeout`` or Ctrl-C must not leave calibrations on the GPU (run 13: two were still there after it)."""
    alive = {p: c for p, c in workers.items() if p.poll() is None}
    for p in alive:
        p.terminate()
    end = time.time() + grace
    for p in alive:
        try:
            p.wait(timeout=max(0.0, end - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return list(alive.values())


def run_workers(args, start: float, todo: list[str], workers: dict[subprocess.Popen, str]) -> None:
    """The FP row and ``--first`` (alone), then the configurations ``--jobs`` at a time; every launched
    process goes into ``workers`` so that the caller can stop them."""
    logs = Path(args.out) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    deadline = start + args.budget

    def start_worker(c: str, extra: list[str]) -> subprocess.Popen:
        p = launch(args, extra, logs / f"{c.replace(':', '_').replace('@', '_')}.log")
        workers[p] = c
        print(f"[{time.time() - start:.0f}s] launched {c} (pid {p.pid})", flush=True)
        return p

    fp = start_worker("fp", ["--fp"]) if "fp" in todo else None
    if args.first:
        p = start_worker(args.first, ["--worker", args.first, "--deadline", str(start + (args.first_budget or args.budget))])
        p.wait()
        print(f"[{time.time() - start:.0f}s] first done rc={p.returncode}", flush=True)
    queue = list(args.configs)
    running: list = []
    while queue or running:
        running = [p for p in running if p.poll() is None]
        while queue and len(running) < args.jobs:
            c = queue.pop(0)
            running.append(start_worker(c, ["--worker", c, "--deadline", str(deadline)]))
        time.sleep(2)
    if fp is not None:
        fp.wait()
    print(f"[{time.time() - start:.0f}s] all done", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--iters", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", default="Set5,Set14,B100")
    ap.add_argument("--first", default=None)
    ap.add_argument("--configs", nargs="*", default=[])
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--budget", type=float, default=480, help="seconds from start at which training loops stop")
    ap.add_argument("--first-budget", type=float, default=None)
    ap.add_argument("--eager", action="store_true", help="no CUDA graph")
    ap.add_argument("--unfused", action="store_true", help="eager quantizers instead of the Triton kernels")
    ap.add_argument("--no-compile", action="store_true", help="eager Swin blocks (no torch.compile)")
    ap.add_argument("--no-bf16", action="store_true", help="the student's Swin blocks in FP32 (TF32), not bf16")
    ap.add_argument("--step-floor", type=float, default=STEP_FLOOR, help="0: off (the 2026-11-30 rows)")
    ap.add_argument("--lr-mode", default="auto", choices=LR_MODES,
                    help="DQC update rule (auto: step-relative in deploy mode, the authors' absolute in paper mode)")
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: DistillSettings.lr, the authors' 1e-2)")
    ap.add_argument("--clamp-codes", action="store_true", help="every paper config: codes clamped to b bits (one config: MODE:BITS:PRUNE:clamp)")
    ap.add_argument("--onnx", action="store_true", help="also export, inspect and run the ONNX Runtime parity")
    ap.add_argument("--parity-dataset", default="Set5")
    ap.add_argument("--parity-threads", type=int, default=2)
    ap.add_argument("--onnx-from", default=None, metavar="DIR",
                    help="only the --onnx checks, on the packed models of a finished result folder (JSONs updated)")
    ap.add_argument("--worker", default=None)
    ap.add_argument("--fp", action="store_true")
    ap.add_argument("--deadline", type=float, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dobi-batch", type=int, default=32)
    ap.add_argument("--redo", action="store_true", help="also rerun configurations whose result in --out is complete")
    args = ap.parse_args()
    try:
        for c in ([args.first] if args.first else []) + args.configs:
            parse(c, args.clamp_codes)
    except (ValueError, CompsrtError) as e:
        ap.error(str(e))
    if args.worker:
        return worker(args)
    if args.onnx_from:
        return onnx_from(args)
    if args.fp:
        return fp_eval(args)
    start = time.time()
    todo = pending(args)
    args.first, args.configs = (args.first if args.first in todo else None), [c for c in args.configs if c in todo]
    workers: dict[subprocess.Popen, str] = {}
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        run_workers(args, start, todo, workers)
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
    finally:
        stopped = stop_workers(workers)
        if stopped:
            print(f"[{time.time() - start:.0f}s] stopped: terminated {', '.join(stopped)} (their results, if any, "
                  "are the JSONs already written)", flush=True)


if __name__ == "__main__":
    main()
