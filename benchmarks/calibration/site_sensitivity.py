"""Which Linears' weights cost most at low bits: DOBI-only models (no DQC) that raise one group of sites from the
base precision, scored against the FP teacher on held-out *training* patches (never benchmarks).

For each variant: DOBI on one batch of training patches, then the distillation loss and the PSNR of the
student's output to the teacher's on another batch (a different seed). Used to choose the mixed preset
(docs/calibration.md, "Presets").

usage: python -m benchmarks.calibration.site_sensitivity --scale 4 --base W2A8 --raise 4 [--patches 8 --patch 32]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from compsrt.calibration.config import QuantConfig
from compsrt.calibration.data import PatchSampler, load_training_lr
from compsrt.calibration.distill import build_student, dobi_init, eval_distill_loss
from compsrt.models.weights import load_swinir

GROUPS = {"none": (), "qkv": ("attn.qkv.*",), "proj": ("attn.proj",), "fc1": ("mlp.fc1",), "fc2": ("mlp.fc2",),
          "mlp": ("mlp.fc1", "mlp.fc2"), "attn": ("attn.qkv.*", "attn.proj"),
          "first_last_block": ("layers.0.residual_group.blocks.0.*", "layers.3.residual_group.blocks.5.*")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--base", default="W2A8", help="WxAy of the sites not raised")
    ap.add_argument("--raise", dest="raise_to", type=int, default=4, help="weight bits of the raised group")
    ap.add_argument("--patches", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--groups", default=",".join(GROUPS))
    args = ap.parse_args()
    torch.manual_seed(0)
    w, _, a = args.base.upper().removeprefix("W").partition("A")
    teacher = load_swinir(args.scale).eval()
    images = [im for _, im in load_training_lr(args.scale, progress=False)]
    x_dobi = PatchSampler(images, args.patch, "cpu", 0).sample(args.patches)
    x_eval = PatchSampler(images, args.patch, "cpu", 1).sample(args.patches)
    with torch.no_grad():
        y_t = teacher(x_eval)
    rows = []
    for g in args.groups.split(","):
        t0 = time.perf_counter()
        cfg = QuantConfig(int(w), wbits=int(w), abits=int(a), overrides=tuple((p, "w", args.raise_to) for p in GROUPS[g]))
        student = build_student(teacher, cfg)
        dobi_init(student, x_dobi)
        with torch.no_grad():
            mse = float(((student(x_eval).clamp(0, 1) - y_t.clamp(0, 1)) ** 2).mean())
        row = {"group": g, "raised_to": args.raise_to if g != "none" else None, "base": args.base,
               "loss": eval_distill_loss(teacher, student, x_eval),
               "psnr_to_teacher": -10 * torch.log10(torch.tensor(mse)).item(),
               "raised_weights": sum(m.fp_weight.numel() for n, m in student.named_modules()
                                     if hasattr(m, "wq") and m.wq.bits == args.raise_to and g != "none"),
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
