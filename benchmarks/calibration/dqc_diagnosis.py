"""DQC diagnosis on CPU (docs/calibration.md, "DQC diagnosis"): DOBI once on T91 patches, then eager DQC from
the same start with each update rule; logs the loss, first-step gradient sizes per quantizer group, collapsed
steps and relative step changes, and the PSNR gap on held-out centre crops of kodim01-04 (not calibration data).

    python -m benchmarks.calibration.dqc_diagnosis --iters 40 --dobi 1 --runs absolute,step
    python -m benchmarks.calibration.dqc_diagnosis --iters 400 --dobi 1 --log 50 --runs step,step_floor
    python -m benchmarks.calibration.dqc_diagnosis --iters 400 --dobi 1 --log 100 --runs step_floor --mode paper [--clamp-codes]
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np, torch
from PIL import Image
from compsrt.models.weights import load_swinir
from compsrt.calibration.data import load_training_lr, PatchSampler
from compsrt.calibration.distill import STEP_FLOOR, build_student, dobi_init, distill_loss, eval_distill_loss, update_scales
from compsrt.calibration.qmodel import (QuantConfig, QLinear, OperandQuant, activation_code_bits, trainable_params,
                                       weight_code_bits)
from compsrt.calibration.quant import S_MIN, floor_steps_
from compsrt.evaluation.metrics import score_y, to_uint8
from compsrt.paths import data_root


def main() -> None:
    torch.set_num_threads(2)

    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=4); ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--batch", type=int, default=2); ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--dobi", type=int, default=4); ap.add_argument("--log", type=int, default=10)
    ap.add_argument("--runs", default="absolute,step,freeze_w")
    ap.add_argument("--mode", default="deploy", choices=("deploy", "paper"))
    ap.add_argument("--clamp-codes", action="store_true", help="paper mode held to b-bit codes")
    args = ap.parse_args()
    T = time.time()
    fp = load_swinir(4).eval()
    imgs = load_training_lr(4, sets=("T91",), progress=False)  # calibration: T91 only; Kodak held out
    evx = PatchSampler([im for _, im in imgs], args.patch, "cpu", 123).sample(4)
    cfg = QuantConfig(args.bits, args.mode, clamp_codes=args.clamp_codes)
    base = build_student(fp, cfg)
    dobi_init(base, PatchSampler([im for _, im in imgs], args.patch, "cpu", 0).sample(args.dobi))
    print(f"DOBI done {time.time()-T:.0f}s", flush=True)
    HR = data_root() / "train" / "Kodak"; KOD = []
    kod_lr = dict(load_training_lr(4, sets=("Kodak",), progress=False))
    for nm in ("kodim01", "kodim02", "kodim03", "kodim04"):
        lr = kod_lr[f"Kodak/{nm}"]
        hr = np.asarray(Image.open(HR / f"{nm}.png").convert("RGB"))
        h, w = lr.shape[:2]; y0, x0 = (h - 64) // 2, (w - 64) // 2
        KOD.append((torch.from_numpy(lr[y0:y0+64, x0:x0+64].copy()).permute(2, 0, 1)[None].float() / 255, hr[4*y0:4*y0+256, 4*x0:4*x0+256]))
    def psnr(m):
        with torch.no_grad():
            return float(np.mean([score_y(to_uint8(m(x)[0].permute(1, 2, 0).numpy()), hr, 4)[0] for x, hr in KOD]))
    P_FP = psnr(fp)
    def groups(m):
        g = {}
        for mod in m.modules():
            if isinstance(mod, QLinear): g.setdefault("w", []).append(mod.wq); g.setdefault("a", []).append(mod.aq)
            elif isinstance(mod, OperandQuant): g.setdefault("op_" + mod.role, []).append(mod.fq)
        return g
    def collapsed(G):
        return {k: f"{sum(int((fq.step() <= 2*S_MIN).sum()) for fq in v)}/{sum(fq.step().numel() for fq in v)}" for k, v in G.items()}
    print(f"FP kodak-crop PSNR {P_FP:.3f}; after DOBI: gap {psnr(base)-P_FP:+.3f} dB, eval loss {eval_distill_loss(fp, base, evx):.5f}", flush=True)
    for run in args.runs.split(","):
        st = copy.deepcopy(base); G = groups(st)
        if run == "freeze_w":
            for fq in G["w"]:
                for p in (fq.l, fq.u, fq.alpha, fq.beta): p.requires_grad_(False)
        params = trainable_params(st)
        scales = update_scales(st) if run.startswith("step") else None
        floored = [fq for v in G.values() for fq in v] if run == "step_floor" else []
        floors = [STEP_FLOOR * fq.step().detach().clone() for fq in floored]
        opt = torch.optim.Adam(params, lr=1e-2, betas=(0.9, 0.99))
        s0 = {k: [fq.step().detach().clone() for fq in v] for k, v in G.items()}
        samp = PatchSampler([im for _, im in imgs], args.patch, "cpu", 1)
        t0 = time.time(); tr = []
        for it in range(1, args.iters + 1):
            x = samp.sample(args.batch); opt.zero_grad(set_to_none=True)
            with torch.no_grad(): tf = []; to = fp(x, stage_outputs=tf)
            sf = []; so = st(x, stage_outputs=sf)
            loss = distill_loss(so, to, sf, tf); loss.backward(); tr.append(float(loss))
            if it == 1:
                gm = {}
                for k, v in G.items():
                    for pn in ("l", "u", "alpha", "beta"):
                        gg = [getattr(fq, pn).grad.abs().flatten() for fq in v if getattr(fq, pn).grad is not None]
                        if gg: gm[f"{k}.{pn}"] = f"{float(torch.cat(gg).mean()):.1e}"
                print(f"[{run}] it1 mean|grad|", gm, flush=True)
            torch.nn.utils.clip_grad_value_(params, 1.0)
            prev = [p.detach().clone() for p in params] if scales is not None else None
            opt.step()
            if scales is not None:
                with torch.no_grad():
                    for p, p0, sc in zip(params, prev, scales): p.copy_(p0 + (p - p0) * sc)
            if floored:
                floor_steps_(floored, floors)
            if it == 1 or it % args.log == 0:
                rel = {k: f"{float(torch.cat([((fq.step().detach()-a)/a).abs().flatten() for fq, a in zip(v, s0[k])]).median()):.2f}" for k, v in G.items()}
                print(f"[{run}] it {it} train(avg last {min(it,args.log)}) {np.mean(tr[-args.log:]):.5f} eval {eval_distill_loss(fp, st, evx):.5f} t={time.time()-t0:.0f}s", flush=True)
                print(f"   collapsed steps {collapsed(G)}  median |ds/s0| {rel}", flush=True)
        print(f"[{run}] FINAL eval loss {eval_distill_loss(fp, st, evx):.5f} kodak gap {psnr(st)-P_FP:+.3f} dB, "
              f"code bits: weights {weight_code_bits(st)}, activations {activation_code_bits(st)}", flush=True)


if __name__ == "__main__":
    main()
