"""One table per scale for issue 13: compsrt's presets beside NVIDIA ModelOpt's PTQ of the same FP model.

Reads what the runs committed and prints markdown (no measuring here):

* the presets' result JSONs (``benchmarks/calibration/run_device.py``: H200 scores; ``--onnx`` /
  ``--onnx-from``: ONNX size, weight bytes by dtype, ONNX Runtime parity),
* ModelOpt's JSONs (``benchmarks/export/modelopt_baseline.py``: ONNX Runtime CPU scores, sizes),
* the engine sizes (``benchmarks/export/engine_sizes.py``: TensorRT-RTX builds, ``sizes*.json``).

    python -m benchmarks.export.presets_table --presets benchmarks/calibration/results/run8_i13_presets [more folders] \\
        --modelopt benchmarks/export/results/modelopt/x4.json \
        --engines benchmarks/export/results/engines/sizes{,_modelopt,_presets}.json
    python -m benchmarks.export.presets_table --presets benchmarks/calibration/results/run9_i13_presets_x2 \
        --modelopt benchmarks/export/results/modelopt/x2_*.json \
        --engines benchmarks/export/results/engines/sizes_presets_x2{,_dqc10}.json \
        --engine-prefix x2-dqc10_ --fp-engine x2_fp

Engine graphs are looked up by name: ``PREFIX + preset + "_matmul" | "_fused-quant"`` (``--engine-prefix``),
``--fp-engine`` for the FP row and ``modelopt_MODE`` for ModelOpt's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DATASETS = ("Set5", "Set14", "B100")


def _engines(files: list[Path]) -> dict[str, int]:
    """Engine bytes by graph name (the default target set) over ``files`` (a later file's graph wins)."""
    out: dict[str, int] = {}
    for f in files:
        for name, g in json.loads(f.read_text()).get("graphs", {}).items():
            e = g.get("engines", {}).get("all", {})
            if e.get("built"):
                out[name] = int(e["engine_bytes"])
    return out


def _dtypes(by_dtype: dict | None) -> str:
    """The low-bit and float weight bytes, in kB."""
    if not by_dtype:
        return "-"
    keep = {k: v for k, v in by_dtype.items() if k in ("int4", "int8", "float", "float16") and v > 1}
    return " + ".join(f"{k} {v / 1e3:,.0f}" for k, v in sorted(keep.items()))


def _mb(n) -> str:
    return f"{n / 1e6:.2f}" if n else "-"


def preset_rows(folder: Path, engines: dict[str, int], prefix: str = "") -> list[list[str]]:
    fp = json.loads(next(folder.glob("x*_fp32.json")).read_text())["eval"]
    rows = []
    for f in sorted(folder.glob("x*_deploy_*.json")):
        res = json.loads(f.read_text())
        onnx = res.get("onnx", {})
        label = onnx.get("precision_label") or res["tag"].split("_deploy_", 1)[1].split("_", 1)[0].upper()
        key = prefix + label.lower()
        if res.get("config", {}).get("prune"):  # no engine of a pruned preset was built
            label, key = label + f" pruned {res['config']['prune']}", None
        gaps = [f"{res['eval'][d]['psnr'] - fp[d]['psnr']:+.3f}" if d in res.get("eval", {}) else "-"
                for d in DATASETS]
        parity = onnx.get("parity", {})
        rows.append([f"compsrt {label} ({res['calibration'].get('iters_done', '?')} it)", *gaps,
                     _mb(onnx.get("onnx_bytes")), _dtypes(onnx.get("weight_bytes_by_dtype")),
                     f"{_mb(engines.get(f'{key}_matmul'))} / {_mb(engines.get(f'{key}_fused-quant'))}",
                     f"{parity['psnr_diff']:+.4f}" if "psnr_diff" in parity else "-"])
    return rows


def modelopt_rows(paths: list[Path], engines: dict[str, int], fp_engine: str = "fp") -> list[list[str]]:
    """One row per ModelOpt mode over ``paths`` (runs that scored different datasets of one mode are merged)."""
    modes: dict[str, dict] = {}
    for path in paths:
        for mode, g in json.loads(path.read_text())["graphs"].items():
            if "gap_db" in g:  # else: a mode that did not finish
                m = modes.setdefault(mode, {"gap_db": {}, "sizes": g.get("sizes", {})})
                m["gap_db"].update(g["gap_db"])
    rows = []
    for mode, g in modes.items():
        gaps = [f"{g['gap_db'][d]:+.3f}" if d in g["gap_db"] else "-" for d in DATASETS]
        name, engine = ("FP32 (dynamic batch)", engines.get(fp_engine)) if mode == "fp" else \
            (f"ModelOpt {mode}", engines.get(f"modelopt_{mode}"))
        rows.append([name, *gaps, _mb(g["sizes"].get("onnx_bytes")), _dtypes(g["sizes"].get("weight_bytes_by_dtype")),
                     _mb(engine), "(ORT-scored)"])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--presets", type=Path, nargs="+", required=True,
                    help="run_device.py result folders (rows in this order)")
    ap.add_argument("--modelopt", type=Path, nargs="*", default=[], help="modelopt_baseline.py JSONs")
    ap.add_argument("--engines", type=Path, nargs="*", default=[], help="engine_sizes.py JSONs (a later one wins)")
    ap.add_argument("--engine-prefix", default="", help="prefix of the presets' graph names in the engine JSONs")
    ap.add_argument("--fp-engine", default="fp", help="graph name of the FP engine (the FP32 row)")
    args = ap.parse_args(argv)
    engines = _engines(args.engines)
    print("| model | Set5 gap | Set14 gap | B100 gap | ONNX MB | weight bytes by dtype, kB | engine MB: Q/DQ / fused-quant "
          "| ORT − simulation, Set5 dB |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [row for folder in args.presets for row in preset_rows(folder, engines, args.engine_prefix)]
    for row in rows + modelopt_rows(args.modelopt, engines, args.fp_engine):
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
