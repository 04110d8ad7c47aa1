"""Shrink the nvidia-pytriton wheel to what `compsrt serve` starts, so it fits a 64 MiB device call.

Keeps the tritonserver binary, its bundled libraries, the python backend and one Python version's
backend stub; drops the bundled libpython 3.13 (only the 3.13 stub links it), the other stubs and
PyTriton's own Python API (compsrt does not use it). 55.4 MB -> 39.4 MB. Install the result with
``pip install --no-deps --target DIR``. Run:

    python -m benchmarks.serving.slim_wheel nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_x86_64.whl OUTDIR --python 3.12
"""

import argparse
import sys
import zipfile
from pathlib import Path


def keep(name: str, python: str) -> bool:
    if name.startswith("nvidia_pytriton.libs/libpython3-"):
        return False
    if name.startswith("pytriton/tritonserver/python_backend_stubs/"):
        return f"/{python}/" in name
    return not name.startswith("pytriton/") or name.startswith("pytriton/tritonserver/") or name == "pytriton/__init__.py"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("wheel", type=Path)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--python", default="3.12", help="the stub to keep (the device's Python)")
    args = ap.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    dst = args.outdir / args.wheel.name
    with zipfile.ZipFile(args.wheel) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zo:
        kept = {i.filename for i in zi.infolist() if keep(i.filename, args.python)}
        for info in zi.infolist():
            if info.filename in kept and not info.filename.endswith(".dist-info/RECORD"):
                zo.writestr(info, zi.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)  # keeps the x bits
            elif info.filename.endswith(".dist-info/RECORD"):
                rows = [r for r in zi.read(info).decode().splitlines() if r.split(",")[0] in kept]
                zo.writestr(info, "\n".join(rows) + "\n", compress_type=zipfile.ZIP_DEFLATED)
    print(f"{dst}: {args.wheel.stat().st_size / 1e6:.1f} MB -> {dst.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
