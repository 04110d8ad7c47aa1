"""``compsrt selftest``: the one command that verifies a device (Jetson, desktop, or a build host).

1. reports TensorRT (flavour, version), the CUDA device and the device-memory layer;
2. exports a small SwinIR (one RSTB, fixed seed) to ONNX and runs ONNX Runtime on fixed tiles;
3. builds a TensorRT engine from it (``tensorrt``, else ``tensorrt_rtx``), and an engine holding one
   HadamardTransform plugin node;
4. where a GPU is usable: runs both engines on the same tiles and reports the difference to ONNX
   Runtime / to the float64 reference, and the latency of each.

Each check prints PASS, FAIL or SKIP (with the reason). Exit status: 0 when the TensorRT-versus-ONNX
Runtime comparison ran and nothing failed; 1 when a check failed; 3 (:data:`EXIT_NOT_VERIFIED`) when
nothing failed but that comparison could not run here (no TensorRT, or no usable GPU), so a script
cannot mistake a build host for a verified device.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import CompsrtError
from .compare import compare

TOL_MAX, TOL_MEAN = 2e-2, 2e-3  # TensorRT may use TF32 for FP32 convolutions/matmuls
KEY_CHECK = "TensorRT vs ONNX Runtime"
EXIT_NOT_VERIFIED = 3  # distinct from 1 (a check failed) and 2 (bad input)


class Report:
    def __init__(self):
        self.rows: list[tuple[str, str, str]] = []

    def add(self, status: str, name: str, detail: str = "") -> None:
        self.rows.append((status, name, detail))
        print(f"[{status:<4}] {name}{': ' + detail if detail else ''}", flush=True)

    @property
    def failed(self) -> bool:
        return any(s == "FAIL" for s, _, _ in self.rows)


def _timeit(fn, n: int = 10) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def export_small(path: Path, tile: int, scale: int, batch: int = 2) -> None:
    """A small SwinIR (one RSTB, fixed seed) through the real export (ONNX + sidecar, as `compsrt export`)."""
    import torch

    from ..export.exporter import ExportOptions, export_model
    from ..models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(0)
    model = SwinIR(SwinIRConfig(scale=scale, depths=(2,), num_heads=(6,))).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(model, path, ExportOptions(tile=(tile, tile), batch=batch, hadamard="matmul"))


def hadamard_onnx(path: Path, n: int = 64, rows: int = 256) -> None:
    import onnx
    from onnx import TensorProto, helper

    from ..hadamard import PLUGIN_NAME, PLUGIN_NAMESPACE, onnx_node_attributes

    node = helper.make_node(PLUGIN_NAME, ["x"], ["y"], domain=PLUGIN_NAMESPACE, **onnx_node_attributes(n))
    g = helper.make_graph([node], "hadamard", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(PLUGIN_NAMESPACE, 1)])
    onnx.save(m, str(path))


def selftest(tile: int = 32, scale: int = 2, keep: Path | None = None, plugins: str = "python") -> int:
    rep = Report()
    tmpdir = None
    if keep:
        folder = Path(keep)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmpdir = tempfile.TemporaryDirectory(prefix="compsrt-selftest-")
        folder = Path(tmpdir.name)
    try:
        return _run(rep, folder, tile, scale, plugins)
    finally:
        if tmpdir:
            tmpdir.cleanup()


def _run(rep: Report, folder: Path, tile: int, scale: int, plugins: str) -> int:
    from .devmem import current_device_info, open_device

    # -- environment
    trt = None
    try:
        from ..plugins.trt_compat import import_tensorrt

        trt = import_tensorrt()
        rep.add("PASS", "TensorRT", f"{trt.__name__} {trt.__version__}")
    except ImportError as exc:
        rep.add("SKIP", "TensorRT", str(exc).split(" (")[0])
    dev = current_device_info()
    rep.add("PASS" if dev else "SKIP", "CUDA device", f"{dev[0]} (compute capability {dev[1]})" if dev else "none found")
    layer = None
    if dev:
        try:
            layer = open_device(0)
            rep.add("PASS", "device-memory layer", layer.kind)
        except CompsrtError as exc:
            rep.add("FAIL", "device-memory layer", str(exc))
    # -- ONNX + ONNX Runtime
    onnx_path = folder / "selftest.onnx"
    export_small(onnx_path, tile, scale)
    from .backends import OrtBackend

    ort_b = OrtBackend(onnx_path)
    x = np.random.default_rng(0).random((ort_b.batch, 3, tile, tile), dtype=np.float32)
    ref = ort_b.run(x)
    ms = _timeit(lambda: ort_b.run(x), 5)
    rep.add("PASS", "ONNX Runtime (CPU)", f"{ort_b.batch} tiles {tile}x{tile} -> x{scale}: {ms:.1f} ms per batch")
    if trt is None:
        rep.add("SKIP", "engine build", "no TensorRT; install tensorrt (desktop/Jetson) or tensorrt-rtx-cu13")
        return _finish(rep)
    # -- engine build
    from .backends.trt import TrtBackend
    from .engine import build_engine

    plan = folder / "selftest.plan"
    try:
        r = build_engine(onnx_path, plan, plugins="none")
        rep.add("PASS", "engine build (small SwinIR)", f"{r.sidecar['engine_bytes']:,} bytes in {r.seconds:.1f} s")
    except Exception as exc:
        rep.add("FAIL", "engine build (small SwinIR)", f"{exc.__class__.__name__}: {exc}")
        return _finish(rep)
    had_onnx, had_plan = folder / "hadamard.onnx", folder / "hadamard.plan"
    hadamard_onnx(had_onnx)
    had_ok = False
    try:
        build_engine(had_onnx, had_plan, plugins=plugins)
        rep.add("PASS", "engine build (HadamardTransform plugin)", f"plugins={plugins}")
        had_ok = True
    except Exception as exc:
        rep.add("FAIL", "engine build (HadamardTransform plugin)", f"{exc.__class__.__name__}: {exc}")
    # -- engine execution
    if layer is None:
        rep.add("SKIP", KEY_CHECK, "no usable CUDA device here; run `compsrt selftest` on the Jetson/desktop GPU")
        return _finish(rep)
    try:
        with TrtBackend(plan) as tb:
            c = compare(tb.run(x), ref, clip=False)
            ms = _timeit(lambda: tb.run(x), 20)
        ok = c["max_abs"] < TOL_MAX and c["mean_abs"] < TOL_MEAN
        rep.add("PASS" if ok else "FAIL", KEY_CHECK,
                f"max |diff| {c['max_abs']:.2e}, mean {c['mean_abs']:.2e} (limits {TOL_MAX:g}/{TOL_MEAN:g}); "
                f"{ms:.2f} ms per batch")
    except Exception as exc:  # TensorRT / CUDA raise their own types; report, do not crash
        rep.add("FAIL", KEY_CHECK, f"{exc.__class__.__name__}: {exc}")
    if had_ok:
        try:
            _run_hadamard(rep, had_plan)
        except Exception as exc:
            rep.add("FAIL", "HadamardTransform plugin", f"{exc.__class__.__name__}: {exc}")
    return _finish(rep)


def _run_hadamard(rep: Report, plan: Path) -> None:
    """Execute the one-node plugin engine through the same device layer; compare with float64."""
    from ..hadamard import reference_hadamard
    from .backends.trt import load_engine
    from .devmem import open_device

    ctx = load_engine(plan).engine.create_execution_context()
    dev = open_device(0)
    rows, n = 256, 64
    h_in, h_out = dev.pinned((rows, n), np.float32), dev.pinned((rows, n), np.float32)
    h_in[...] = np.random.default_rng(1).standard_normal((rows, n)).astype(np.float32)
    d_in, d_out = dev.alloc(h_in.nbytes), dev.alloc(h_out.nbytes)
    ctx.set_tensor_address("x", d_in)
    ctx.set_tensor_address("y", d_out)
    dev.htod_async(d_in, h_in)
    ctx.execute_async_v3(dev.stream_handle)
    dev.dtoh_async(h_out, d_out)
    dev.synchronize()
    err = compare(h_out, reference_hadamard(h_in, n), clip=False)["max_abs"]
    rep.add("PASS" if err < 1e-4 else "FAIL", "HadamardTransform plugin", f"max |diff| to float64 reference {err:.2e}")
    dev.free(d_in)
    dev.free(d_out)
    dev.close()


def _finish(rep: Report) -> int:
    n = {s: sum(1 for r in rep.rows if r[0] == s) for s in ("PASS", "FAIL", "SKIP")}
    print(f"selftest: {n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped", flush=True)
    if rep.failed:
        return 1
    if not any(s == "PASS" and name == KEY_CHECK for s, name, _ in rep.rows):
        print(f"selftest: {KEY_CHECK} was skipped: TensorRT execution is NOT verified on this machine "
              f"(exit status {EXIT_NOT_VERIFIED}); run `compsrt selftest` where TensorRT and a GPU are usable", flush=True)
        return EXIT_NOT_VERIFIED
    return 0
