"""compsrt presets and NVIDIA ModelOpt on one reference: Set5 PSNR of each graph under ONNX Runtime on the CPU.

Both sides are read from committed JSON, nothing is rerun:
- compsrt: `onnx.parity.psnr_onnx` of each calibration result (`compsrt export-parity`: the matmul variant under
  ONNX Runtime, the runtime tiler at tile 64 without overlap, batches of 8);
- ModelOpt and the FP graph: `graphs.*.scores.Set5.psnr` of `benchmarks/export/modelopt_baseline.py`'s JSON (the
  same tiler, tile and batch; its FP row is the FP ONNX graph scored that way).
Every gap is against that FP graph's score, so both sides carry the same tile seams and the same ONNX Runtime
kernels. Only Set5 is scored both ways (export-parity runs Set5).

    python -m benchmarks.export.same_reference --scale 4 \
        --results benchmarks/calibration/results/run8_i13_presets ... \
        --modelopt benchmarks/export/results/modelopt/x4.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _iters(result: dict) -> int | None:
    cal = result.get("calibration") or {}
    return cal.get("iters_done") or cal.get("iters")


def compsrt_rows(folders: list[Path], scale: int) -> list[dict]:
    """One row per deploy-mode result with an ONNX Runtime parity score; a later folder's row of the same
    configuration and iteration count replaces an earlier one."""
    rows: dict[tuple, dict] = {}
    for folder in folders:
        for path in sorted(folder.glob(f"x{scale}_deploy_*.json")):
            result = json.loads(path.read_text())
            parity = (result.get("onnx") or {}).get("parity") or {}
            if parity.get("dataset") != "Set5" or parity.get("psnr_onnx") is None:
                continue
            name = f"compsrt {path.stem.removeprefix(f'x{scale}_deploy_')}"
            key = (name, _iters(result))
            rows[key] = {"graph": name, "iters": _iters(result), "set5_psnr": parity["psnr_onnx"], "source": str(path)}
    return list(rows.values())


def modelopt_rows(paths: list[Path]) -> tuple[float, list[dict]]:
    fp, rows = None, []
    for path in paths:
        graphs = json.loads(path.read_text())["graphs"]
        for name, graph in graphs.items():
            score = ((graph.get("scores") or {}).get("Set5") or {}).get("psnr")
            if score is None:
                continue
            if name == "fp":
                if fp is not None and abs(fp - score) > 1e-9:
                    raise SystemExit(f"{path}: its FP graph scores {score}, another file's {fp}; not one reference")
                fp = score
            else:
                rows.append({"graph": f"ModelOpt {name}", "iters": None, "set5_psnr": score, "source": str(path)})
    if fp is None:
        raise SystemExit("no FP graph score in the ModelOpt JSON files")
    return fp, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, choices=(2, 3, 4), required=True)
    ap.add_argument("--results", type=Path, nargs="+", required=True, help="calibration result folders")
    ap.add_argument("--modelopt", type=Path, nargs="+", required=True, help="modelopt_baseline.py JSON files")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    fp, rows = modelopt_rows(args.modelopt)
    rows = compsrt_rows(args.results, args.scale) + rows
    for row in rows:
        row["gap_db"] = row["set5_psnr"] - fp
    print(f"x{args.scale} Set5, ONNX Runtime CPU, tile 64 without overlap; FP ONNX graph {fp:.4f} dB")
    print("| graph | DQC iterations | Set5 PSNR | gap to the FP graph |")
    print("|---|---|---|---|")
    for row in rows:
        iters = "-" if row["iters"] is None else f"{row['iters']:,}"
        print(f"| {row['graph']} | {iters} | {row['set5_psnr']:.4f} | {row['gap_db']:+.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"scale": args.scale, "fp_set5_psnr": fp, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
