"""The logged DQC losses of run_device.py result JSONs (``calibration.loss``: [iteration, loss] pairs), in numbers.

Prints, per JSON: the range of the logged losses from ``--from-iter`` on, the mean of each tenth of the run
(x 1e-3), and with ``--ref`` the relative difference to the reference run's loss at the same logged iterations
(same seed = same batches, so the difference is the setting's, not the data's).

usage: python -m benchmarks.calibration.loss_curves R/x4_deploy_w4a4_lr0.003.json ... [--ref R/x4_deploy_w4a4.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(path: Path) -> dict[int, float] | None:
    """The logged losses of a result JSON, or None for one without a calibration (the FP row)."""
    loss = json.loads(path.read_text()).get("calibration", {}).get("loss")
    return None if loss is None else {int(i): float(v) for i, v in loss}


def tenths(values: list[float]) -> list[float]:
    """Means of ten consecutive, nearly equal parts (fewer when there are fewer than ten values)."""
    n = len(values)
    cuts = sorted({round(j * n / 10) for j in range(11)})
    return [sum(values[a:b]) / (b - a) for a, b in zip(cuts, cuts[1:])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--ref", type=Path, default=None, help="reference run (same seed) to compare each run with")
    ap.add_argument("--from-iter", type=int, default=0, help="first logged iteration of the range (default all)")
    args = ap.parse_args(argv)
    ref = curve(args.ref) if args.ref else None
    if args.ref and ref is None:
        ap.error(f"--ref {args.ref} has no calibration loss log (an FP row?); give a calibrated run's JSON")
    for path in args.runs:
        c = curve(path)
        if c is None:
            print(f"{path.name}: no calibration loss log, skipped")
            continue
        tail = [v for i, v in c.items() if i >= args.from_iter]
        print(f"{path.name}: {len(c)} logged, from iteration {args.from_iter}: {min(tail) * 1e3:.3f}-{max(tail) * 1e3:.3f} e-3")
        print("  tenths (e-3): " + " ".join(f"{v * 1e3:.2f}" for v in tenths(list(c.values()))))
        if ref is not None:
            rel = [(i, 100 * (v / ref[i] - 1)) for i, v in c.items() if i in ref]
            print(f"  vs {args.ref.name} at {len(rel)} common iterations: {min(r for _, r in rel):+.1f} to "
                  f"{max(r for _, r in rel):+.1f} %; " + " ".join(f"{i}:{r:+.1f}" for i, r in rel))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
