"""Compare two builds of one ONNX by docker/build_engine.sh: the engines and the sidecars `compsrt build` writes.

    python docker/compare_engines.py HOST_DIR IMAGE_DIR NAME [--json OUT.json]

Reads NAME.plan, NAME.plan.json (sidecar) and NAME.plan.layers.json from both folders. The build must
agree on everything a user relies on: the engine's size and bytes, its inputs and outputs, the precision
record, TensorRT's version, the plugin, the tile and scale, the ONNX's hash, the layer list. Only the
fields that name a time or a path may differ (SAME_BUT_FOR). Exit status 0 when they agree, 1 when not
(the differences are printed), 2 when a file is missing. Standard library only: it runs anywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

# Sidecar fields that record when, how long, or where: they differ between any two builds.
SAME_BUT_FOR = ("built", "build_seconds", "onnx.path", "timing_cache")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(a_dir: Path, b_dir: Path, name: str) -> dict:
    """What agrees and what differs between the two builds (``verdict`` 'same' or 'different')."""
    files = {}
    for d in (a_dir, b_dir):
        for suffix in (".plan", ".plan.json", ".plan.layers.json"):
            f = d / f"{name}{suffix}"
            if not f.is_file():
                raise FileNotFoundError(f"{f} is missing: did the build run?")
            files[(d, suffix)] = f
    a_side = _flat(json.loads(files[(a_dir, ".plan.json")].read_text()))
    b_side = _flat(json.loads(files[(b_dir, ".plan.json")].read_text()))
    diffs = {k: [a_side.get(k), b_side.get(k)] for k in sorted(set(a_side) | set(b_side))
             if a_side.get(k) != b_side.get(k)}
    expected = {k: v for k, v in diffs.items() if k in SAME_BUT_FOR}
    unexpected = {k: v for k, v in diffs.items() if k not in SAME_BUT_FOR}
    a_plan, b_plan = files[(a_dir, ".plan")], files[(b_dir, ".plan")]
    engine = {"bytes": [a_plan.stat().st_size, b_plan.stat().st_size], "sha256": [_sha256(a_plan), _sha256(b_plan)]}
    layers_same = (json.loads(files[(a_dir, ".plan.layers.json")].read_text())
                   == json.loads(files[(b_dir, ".plan.layers.json")].read_text()))
    if engine["sha256"][0] != engine["sha256"][1]:
        unexpected["engine bytes (sha256)"] = engine["sha256"]
    if not layers_same:
        unexpected["layer list (.plan.layers.json)"] = ["differs", "differs"]
    shown = ("engine_bytes", "inputs", "outputs", "input_shape", "input_dtype", "scale", "tile", "batch",
             "tensorrt.module", "tensorrt.version", "plugin.kind", "plugin.hash", "onnx.sha256", "sparse_weights")
    agreed = {k: a_side.get(k) for k in shown if k not in unexpected}
    agreed.update({k: a_side[k] for k in a_side if k.startswith("precision.") and k not in unexpected})
    return {"name": name, "dirs": [str(a_dir), str(b_dir)], "verdict": "different" if unexpected else "same",
            "engine": engine, "layers_same": layers_same, "agreed": agreed, "differ_as_expected": expected,
            "differ": unexpected}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a_dir", type=Path, help="first build's output folder (the host's)")
    p.add_argument("b_dir", type=Path, help="second build's output folder (the image's)")
    p.add_argument("name", help="engine base name (NAME.plan)")
    p.add_argument("--json", type=Path, help="also write the comparison here")
    args = p.parse_args(argv)
    try:
        r = compare(args.a_dir, args.b_dir, args.name)
    except FileNotFoundError as exc:
        print(f"compare_engines.py: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    print(f"engine {args.name}.plan: {r['engine']['bytes'][0]:,} / {r['engine']['bytes'][1]:,} bytes, sha256 "
          f"{r['engine']['sha256'][0][:16]} / {r['engine']['sha256'][1][:16]}; layer lists "
          f"{'identical' if r['layers_same'] else 'differ'}")
    for k, v in r["agreed"].items():
        print(f"  same      {k} = {json.dumps(v)}")
    for k, (a, b) in r["differ_as_expected"].items():
        print(f"  expected  {k}: {json.dumps(a)} / {json.dumps(b)}")
    for k, (a, b) in r["differ"].items():
        print(f"  DIFFERENT {k}: {json.dumps(a)} / {json.dumps(b)}")
    print(f"verdict: {r['verdict']}")
    return 0 if r["verdict"] == "same" else 1


if __name__ == "__main__":
    sys.exit(main())
