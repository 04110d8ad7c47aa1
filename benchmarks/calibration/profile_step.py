"""Time and profile the DQC step (deploy W4A4 x4 at batch 16 x 64^2 by default) on the GPU.

Prints, and writes to ``--json``:
* per variant (``--variants``, a comma list; each variant is ``base`` = the settings of a default
  (4,000-iteration) calibration on the device, run for ``--iters`` iterations, or a
  ``+``-joined list of changes to them: ``eager`` = no compiled blocks and no bf16 (the step before both),
  ``compile`` / ``bf16`` / ``fp32`` = compiled blocks / bf16 autocast of the student's blocks on / off,
  ``pool`` = teacher outputs precomputed on a fixed pool of ``--pool`` patches, ``seed1`` = another seed,
  the noise reference; e.g. ``base,seed1,pool,fp32``): steady s/iter with the CUDA-graph step, DOBI
  seconds, setup seconds (warm-up, compilation, graph capture), peak memory, the fixed-seed loss curve
  (every ``--log-every`` iterations) and the distillation loss on 32 fixed held-out patches after training;
* a region-by-region profile of eager iterations (CUDA events, synchronised at each boundary: data, teacher
  forward, student forward, loss, backward, optimizer = clip + Adam + step-relative rescale + floor; with
  the default settings' compiled / bf16 blocks where they are on), and the graph-step cost of the
  quantizers (step time minus that of the same step with every quantizer bypassed);
* DOBI seconds by the brute force (``--dobi-reference``: the 100-pass search this replaced);
* whether two runs with the same seed give the same quantizer parameters (``--determinism N`` iterations);
* the profiler's top CUDA kernels (``--profile-iters``).

usage (device, repo root, COMPSRT_DATA/COMPSRT_CACHE as for run_device.py):
  python -m benchmarks.calibration.profile_step --iters 200 --variants base,seed1,pool --dobi-reference \
      --determinism 20 --json $OUT/step.json

Written to run in older checkouts too (the "before" of profile_before_after.sh): settings fields a variant
does not name are left alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path


def param_hash(student) -> str:
    from compsrt.calibration.qmodel import quantizers

    h = hashlib.sha256()
    for fq in quantizers(student):
        for p in (fq.l, fq.u, fq.alpha, fq.beta):
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def regions(fp, cfg, sampler, st, n: int) -> dict:
    """Per region, mean ms over ``n`` eager iterations (after one warm-up), synchronised at each boundary:
    ``eager_ms`` (CUDA events: its kernels plus the eager launch gaps) and ``gpu_busy_ms`` (the sum of its
    kernels' durations from the profiler: what the region costs once launch gaps are gone, as in the graph)."""
    import torch

    from compsrt.calibration.distill import (build_student, distill_loss, dobi_init, for_device, optimizer_step,
                                             update_scales)
    from compsrt.calibration.qmodel import quantizers, trainable_params
    from compsrt.calibration.quant import floor_steps_

    dev = sampler.device
    st = for_device(st, dev)
    compiled, bf16 = bool(getattr(st, "compile", False)), bool(getattr(st, "bf16", False))  # absent in older trees
    student = build_student(fp, cfg).to(dev)
    dobi_init(student, sampler.sample(st.dobi_batch))
    for fq in quantizers(student):
        fq.fused = st.fused_quantizers and not compiled and fq.l.ndim == 0
    params = trainable_params(student)
    scales = update_scales(student)
    fqs = quantizers(student)
    floors = [0.25 * fq.step().detach().clone() for fq in fqs]
    opt = torch.optim.Adam(params, lr=st.lr, betas=st.betas)
    x = torch.zeros(st.batch, 3, st.patch, st.patch, device=dev)
    S: dict = {}

    def data():
        x.copy_(sampler.sample(st.batch))

    def teacher_forward():
        with torch.no_grad():
            S["tf"] = []
            S["t_out"] = fp(x, stage_outputs=S["tf"])

    def student_forward():
        S["sf"] = []
        S["s_out"] = student(x, stage_outputs=S["sf"])

    def loss():
        S["loss"] = distill_loss(S["s_out"], S["t_out"], S["sf"], S["tf"])

    def backward():
        S["loss"].backward()

    def optimizer():  # as distill.step: clip, Adam, step-relative rescale, floor
        torch.nn.utils.clip_grad_value_(params, st.clip)
        optimizer_step(opt, params, scales)
        floor_steps_(fqs, floors)
        opt.zero_grad(set_to_none=True)

    fns = (data, teacher_forward, student_forward, loss, backward, optimizer)
    wall = dict.fromkeys((f.__name__ for f in fns), 0.0)
    busy = dict(wall)
    stack = ExitStack()
    if compiled or bf16:
        from compsrt.calibration.distill import fast_blocks

        stack.enter_context(fast_blocks(student, x, compiled, bf16))
        stack.enter_context(fast_blocks(fp, x, compiled, False))
    with stack:
        _timed(fns, n, wall, busy)
    wall["total"], busy["total"] = sum(wall.values()), sum(busy.values())
    return {"compiled": compiled, "bf16": bf16, "eager_ms": {k: round(v, 2) for k, v in wall.items()},
            "gpu_busy_ms": {k: round(v, 2) for k, v in busy.items()}}


def _timed(fns, n: int, wall: dict, busy: dict) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    for i in range(n + 1):
        for f in fns:
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            if i:  # GPU busy time: the kernels' own durations, without the eager launch gaps
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    a.record()
                    f()
                    b.record()
                    torch.cuda.synchronize()
                busy[f.__name__] += sum(getattr(e, "self_device_time_total", 0) for e in prof.key_averages()) / 1e3 / n
                wall[f.__name__] += a.elapsed_time(b) / n
            else:
                f()


def main() -> None:
    import torch

    from compsrt.calibration import quant
    from compsrt.calibration.data import PatchSampler, load_training_lr
    from compsrt.calibration.distill import (DistillSettings, build_student, calibrate, dobi_init, eval_distill_loss,
                                             for_device)
    from compsrt.calibration.qmodel import QuantConfig
    from compsrt.models.weights import load_swinir

    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--mode", default="deploy")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--variants", default="base", help="comma list of base or +-joined eager, compile, bf16, fp32, pool, seed1")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (aot_eager: a CPU check of the script)")
    ap.add_argument("--pool", type=int, default=1024, help="teacher-pool size of the 'pool' variant")
    ap.add_argument("--region-iters", type=int, default=5, help="eager iterations of the region profile (0: skip)")
    ap.add_argument("--bypass-iters", type=int, default=40, help="graph iterations with quantizers bypassed (0: skip)")
    ap.add_argument("--profile-iters", type=int, default=3, help="eager iterations under torch.profiler (0: skip)")
    ap.add_argument("--dobi-reference", action="store_true", help="also time DOBI by the 100-pass brute force")
    ap.add_argument("--determinism", type=int, default=0, help="iterations of the same-seed repeat check (0: skip)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--dobi-batch", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--unfused", action="store_true", help="eager quantizers instead of the Triton kernels")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    if args.compile_backend:
        from compsrt.calibration import distill

        distill.COMPILE_BACKEND = args.compile_backend
    dev = torch.device(args.device)
    on_gpu = dev.type == "cuda"
    fp = load_swinir(args.scale).to(dev).eval()
    images = [im for _, im in load_training_lr(args.scale, progress=False)]
    cfg = QuantConfig(args.bits, args.mode)
    # the settings of a default (4,000-iteration) calibration on this device, run for --iters iterations
    base = replace(for_device(DistillSettings(batch=args.batch, patch=args.patch, dobi_batch=args.dobi_batch,
                                              fused_quantizers=not args.unfused, log_every=args.log_every), dev),
                   iters=args.iters)
    held_out = PatchSampler(images, args.patch, dev, 12345).sample(32)
    out = {"config": cfg.tag, "scale": args.scale, "batch": args.batch, "torch": torch.__version__,
           "command": " ".join(sys.argv), "variants": {}}

    def sampler(seed=0):
        return PatchSampler(images, args.patch, dev, seed)

    def save():  # after every section: a later failure keeps what was measured
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))

    def mem_reset():
        if on_gpu:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    changes = {"base": {}, "seed1": {"seed": 1}, "pool": {"teacher_pool": args.pool},
               "eager": {"compile": False, "bf16": False}, "compile": {"compile": True}, "bf16": {"bf16": True},
               "fp32": {"bf16": False}}
    for v in args.variants.split(","):
        st = base
        for part in v.split("+"):
            st = replace(st, **changes[part])
        mem_reset()
        try:
            student, log = calibrate(fp, cfg, sampler(st.seed), st, progress=False)
        except Exception as exc:  # keep the other variants' measurements
            out["variants"][v] = {"error": f"{exc.__class__.__name__}: {str(exc)[:2000]}"}
            print(json.dumps({v: out["variants"][v]}), flush=True)
            save()
            continue
        with torch.no_grad():
            ev = sum(eval_distill_loss(fp, student, held_out[i : i + 8]) for i in range(0, 32, 8)) / 4
        row = {"device": log["device"], "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
               **{k: log.get(k) for k in ("iters_done", "seconds_dobi", "seconds_teacher_pool", "seconds_setup",
                                          "seconds_per_iter_steady", "graph", "graph_error", "fused_quantizers",
                                          "compiled", "compile_error", "bf16", "loss_first")},
               "eval_loss_held_out": ev, "loss_curve": log["loss"], "quantizer_hash": param_hash(student)}
        row["projected_4000_s"] = (row["seconds_dobi"] + (row["seconds_teacher_pool"] or 0) + row["seconds_setup"]
                                   + 4000 * row["seconds_per_iter_steady"])
        out["variants"][v] = row
        del student
        print(json.dumps({v: {k: x for k, x in row.items() if k != "loss_curve"}}), flush=True)
        save()

    if args.bypass_iters and on_gpu:  # the quantizers' share of the graph step: bypass them (keeping a gradient path)
        orig = quant.FakeQuant.forward

        def bypass(self, t):
            return orig(self, t) if self.observe else t + 0 * self.alpha

        quant.FakeQuant.forward = bypass
        try:
            _, log = calibrate(fp, cfg, sampler(), replace(base, iters=args.bypass_iters, log_every=10**9), progress=False)
        finally:
            quant.FakeQuant.forward = orig
        out["graph_step_s_quantizers_bypassed"] = log["seconds_per_iter_steady"]
        print(json.dumps({"graph_step_s_quantizers_bypassed": log["seconds_per_iter_steady"]}), flush=True)
        save()

    if args.region_iters and on_gpu:
        try:
            out["regions"] = regions(fp, cfg, sampler(), base, args.region_iters)
        except Exception as exc:
            out["regions"] = {"error": f"{exc.__class__.__name__}: {str(exc)[:2000]}"}
        print(json.dumps({"regions": out["regions"]}), flush=True)
        save()

    if args.dobi_reference:
        x = sampler().sample(args.dobi_batch)
        timings, fast = {}, quant.dobi_errors
        for name, fn in (("fast", fast), ("reference", quant.dobi_errors_reference)):
            quant.dobi_errors = fn  # what FakeQuant.dobi_ calls
            try:
                if on_gpu:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                student = build_student(fp, cfg).to(dev)  # weight DOBI (per channel), then activations
                dobi_init(student, x)
                if on_gpu:
                    torch.cuda.synchronize()
                timings[name] = {"seconds": time.perf_counter() - t0, "hash": param_hash(student)}
            finally:
                quant.dobi_errors = fast
        with torch.no_grad():
            t0 = time.perf_counter()
            fp(x)
            if on_gpu:
                torch.cuda.synchronize()
            timings["fp_forward_seconds"] = time.perf_counter() - t0
        timings["same_ranges"] = timings["fast"]["hash"] == timings["reference"]["hash"]
        out["dobi"] = timings
        print(json.dumps({"dobi": timings}), flush=True)
        save()

    if args.determinism:
        st = replace(base, iters=args.determinism, log_every=10**9)
        hashes = [param_hash(calibrate(fp, cfg, sampler(), st, progress=False)[0]) for _ in range(2)]
        out["determinism"] = {"iters": args.determinism, "hashes": hashes, "same": hashes[0] == hashes[1]}
        print(json.dumps({"determinism": out["determinism"]}), flush=True)
        save()

    if args.profile_iters:
        from torch.profiler import ProfilerActivity, profile

        st = replace(base, iters=args.profile_iters, cuda_graph=False, dobi_batch=1)
        with profile(activities=[ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU]) as prof:
            calibrate(fp, cfg, sampler(), st, progress=False)
        key = "cuda_time_total" if on_gpu else "cpu_time_total"
        table = prof.key_averages().table(sort_by=key, row_limit=25)
        out["top_kernels"] = table
        print(table, flush=True)
    save()


if __name__ == "__main__":
    main()
