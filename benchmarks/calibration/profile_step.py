"""Time the DQC step on the GPU and list its heaviest CUDA kernels.

Prints one JSON line (steady-state seconds per iteration with the CUDA-graph step, setup seconds =
warm-up + graph capture, DOBI seconds, peak memory, the projected DOBI + 4,000-iteration time) and the
profiler's top kernels of a few eager (graph-less) iterations.

usage (device, repo root, COMPSRT_DATA/COMPSRT_CACHE as for run_device.py):
  python -m benchmarks.calibration.profile_step --scale 4 --bits 4 --mode deploy --iters 60 --json $OUT/step.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    import torch

    from compsrt.calibration.data import PatchSampler, load_training_lr
    from compsrt.calibration.distill import DistillSettings, calibrate
    from compsrt.calibration.qmodel import QuantConfig
    from compsrt.models.weights import load_swinir

    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--mode", default="deploy")
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--profile-iters", type=int, default=4, help="eager iterations under torch.profiler (0: skip)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dobi-batch", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--unfused", action="store_true", help="eager quantizers instead of the Triton kernels")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    dev = torch.device(args.device)
    on_gpu = dev.type == "cuda"
    fp = load_swinir(args.scale).to(dev).eval()
    sampler = PatchSampler([im for _, im in load_training_lr(args.scale, progress=False)], 64, dev, 0)
    cfg = QuantConfig(args.bits, args.mode)
    base = DistillSettings(iters=args.iters, batch=args.batch, dobi_batch=args.dobi_batch,
                           fused_quantizers=not args.unfused, log_every=10**9)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    _, log = calibrate(fp, cfg, sampler, base, progress=False)
    row = {"config": cfg.tag, "scale": args.scale, "batch": args.batch, "device": log["device"],
           "torch": torch.__version__, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
           **{k: log[k] for k in ("iters_done", "seconds_dobi", "seconds_setup", "seconds_per_iter_steady", "graph",
                                  "fused_quantizers")}}
    row["projected_4000_s"] = row["seconds_dobi"] + row["seconds_setup"] + 4000 * row["seconds_per_iter_steady"]
    print(json.dumps(row), flush=True)
    if args.profile_iters:
        from torch.profiler import ProfilerActivity, profile

        st = replace(base, iters=args.profile_iters, cuda_graph=False, dobi_batch=1)
        with profile(activities=[ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU]) as prof:
            calibrate(fp, cfg, sampler, st, progress=False)
        key = "cuda_time_total" if on_gpu else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
