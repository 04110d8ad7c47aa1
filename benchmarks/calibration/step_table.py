"""Markdown tables of profile_step.py results (before.json / after.json of profile_before_after.sh): the
step per variant and the loss curves against the first JSON's ``base`` run.

Same-batch deviation: variants that draw the same fresh patches as the reference (not ``pool``, not
another seed) see the same batch at every logged iteration, so the relative difference of their logged
losses measures how far the change moved the training trajectory; another seed shows the seed noise.

usage: python -m benchmarks.calibration.step_table benchmarks/calibration/results/run8_i12_speed/before.json \
           benchmarks/calibration/results/run8_i12_speed/after.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("json", nargs="+", help="profile_step.py outputs; the first one's base run is the reference")
    args = ap.parse_args()
    rows, regions = [], []
    for path in args.json:
        res = json.loads(Path(path).read_text())
        for name, v in res["variants"].items():
            if "error" not in v:
                rows.append((f"{Path(path).stem}: {name}", v))
        if "gpu_busy_ms" in res.get("regions", {}):
            regions.append((Path(path).stem, res["regions"]))
    ref = rows[0][1]["loss_curve"]
    ref_s = rows[0][1]["seconds_per_iter_steady"]
    print("| run: variant | compiled | bf16 | s / iter | speed-up | setup s | peak GiB | held-out loss | "
          "mean logged loss, it. 110-200 | max same-batch deviation |")
    print("|" + "---|" * 10)
    for name, v in rows:
        curve = v["loss_curve"]
        dev = max(abs(a - b) / b for (_, a), (_, b) in zip(curve, ref))
        other = "pool" in name or "seed" in name  # other batches: the deviation is the seed noise, not a drift
        flag = lambda k: "–" if v.get(k) is None else ("yes" if v[k] else "no")  # noqa: E731
        print(f"| {name} | {flag('compiled')} | {flag('bf16')} | {v['seconds_per_iter_steady']:.4f} | "
              f"{ref_s / v['seconds_per_iter_steady']:.2f}× | {v['seconds_setup']:.1f} | {v['peak_gib']:.1f} | "
              f"{v['eval_loss_held_out']:.6f} | {mean(x for it, x in curve if it > 100):.6f} | {100 * dev:.1f} %{' (other batches)' if other else ''} |")
    if regions:
        print()
        print("| region | " + " | ".join(f"{n}: GPU busy | {n}: eager" for n, _ in regions) + " |")
        print("|---|" + "---|---|" * len(regions))
        for k in regions[0][1]["gpu_busy_ms"]:
            print(f"| {k} | " + " | ".join(f"{r['gpu_busy_ms'][k]:.1f} | {r['eager_ms'][k]:.1f}" for _, r in regions) + " |")


if __name__ == "__main__":
    main()
