"""How `make demo`'s calibration spends its budget: the same call as compsrt/pipeline.py's calibration step
(x4 deploy, the demo's preset (compsrt.pipeline.DEMO_PRESET), 3 Kodak images, batch 2 of 16x16, DOBI on 2, 50 iterations, 150 s budget); prints the
seconds outside DQC iterations (data, model, DOBI, setup) against the budget.

usage: python -m benchmarks.calibration.demo_budget [--budget 150] [--iters 50]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path



def main() -> None:
    from compsrt.calibration.distill import DistillSettings
    from compsrt.calibration.pipeline import compress
    from compsrt.calibration.qmodel import QuantConfig
    from compsrt.paths import data_root
    from compsrt.pipeline import DEMO_PRESET, _mini_data

    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=150)
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    t0 = time.perf_counter()
    st = DistillSettings(iters=args.iters, batch=2, patch=16, dobi_batch=2, cuda_graph=False, log_every=10,
                         deadline=time.time() + args.budget)
    with _mini_data(data_root(), 3) as data, tempfile.TemporaryDirectory() as tmp:
        meta = compress(4, QuantConfig.from_preset(DEMO_PRESET), Path(tmp) / "x.pt", st, data=data, device="cpu",
                        progress=False)
    wall = time.perf_counter() - t0
    log = meta["log"]
    outside = wall - (log["seconds_train"] - log["seconds_setup"])
    print(json.dumps({"preset": DEMO_PRESET, "wall_s": round(wall, 1), "budget_s": args.budget, "iters_done": log["iters_done"],
                      "seconds_data": round(meta["seconds_data"], 1), "seconds_dobi": round(log["seconds_dobi"], 1),
                      "seconds_dqc_iterations": round(log["seconds_train"] - log["seconds_setup"], 1),
                      "seconds_outside_dqc": round(outside, 1), "fraction_of_budget_outside_dqc": round(outside / args.budget, 3)}))


if __name__ == "__main__":
    main()
