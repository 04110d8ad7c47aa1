"""The C++ plugin (compsrt/plugins/cpp) built against real TensorRT headers, then used by TensorRT-RTX on the CPU.

Opt-in: set COMPSRT_TRT_INCLUDE to a folder holding NvInfer.h (e.g. the include/ folder of NVIDIA's
open-source TensorRT repository at release/10.3, release/10.8 or main; see docs/plugins.md). Without it,
every test here skips; CI still compiles the CUDA source with nvcc (tests/test_plugins.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compsrt.plugins.core import FIELD_ORDER

REPO = Path(__file__).resolve().parents[1]
CPP_DIR = REPO / "compsrt/plugins/cpp"
INCLUDE = os.environ.get("COMPSRT_TRT_INCLUDE")
STRICT = ("-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Wconversion")
DEFAULT_ARCHS = "80;86;87;89;90"
ENTRY_POINTS = {"getCreators", "setLoggerFinder", "compsrtRegisterPlugins"}

pytestmark = pytest.mark.skipif(
    not INCLUDE, reason="COMPSRT_TRT_INCLUDE is not set (a folder with TensorRT's NvInfer.h; docs/plugins.md)")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found")
    return path


@pytest.fixture(scope="module")
def cpp_build(tmp_path_factory) -> dict:
    """A plain configure (default architectures) and a build of libcompsrt_plugins.so, -j2."""
    if not (Path(INCLUDE) / "NvInfer.h").is_file():
        pytest.fail(f"COMPSRT_TRT_INCLUDE={INCLUDE} has no NvInfer.h")
    cmake, _ = _tool("cmake"), _tool("nvcc")
    build = tmp_path_factory.mktemp("cpp_build")
    cfg = subprocess.run([cmake, "-S", str(CPP_DIR), "-B", str(build), f"-DTENSORRT_INCLUDE_DIR={INCLUDE}",
                          "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"], capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    r = subprocess.run([cmake, "--build", str(build), "-j2"], capture_output=True, text=True, timeout=900)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    lib = build / "libcompsrt_plugins.so"
    assert lib.is_file(), log
    return {"dir": build, "lib": lib, "log": log}


def test_plain_configure_targets_the_default_architectures(cpp_build):
    """CMAKE_CUDA_ARCHITECTURES is defaulted before project(), so it is not the compiler's sm_75."""
    cache = (cpp_build["dir"] / "CMakeCache.txt").read_text()
    assert f"CMAKE_CUDA_ARCHITECTURES:STRING={DEFAULT_ARCHS}" in cache
    commands = json.loads((cpp_build["dir"] / "compile_commands.json").read_text())
    nvcc = next(c["command"] for c in commands if c["file"].endswith("hadamard_launch.cu"))
    for arch in DEFAULT_ARCHS.split(";"):
        assert f"arch=compute_{arch}" in nvcc, nvcc
    assert "compute_75" not in nvcc


def test_strict_warnings_and_none_emitted(cpp_build):
    commands = json.loads((cpp_build["dir"] / "compile_commands.json").read_text())
    cpp = next(c["command"] for c in commands if c["file"].endswith("HadamardPlugin.cpp"))
    for flag in (*STRICT, "-fvisibility=hidden"):
        assert flag in cpp.split(), cpp
    warnings = [ln for ln in cpp_build["log"].splitlines() if "warning" in ln.lower()]
    assert warnings == [], "\n".join(warnings[:20])


def test_exports_only_the_entry_points_and_needs_no_tensorrt_library(cpp_build):
    nm, readelf = _tool("nm"), _tool("readelf")
    syms = subprocess.run([nm, "-D", "--defined-only", str(cpp_build["lib"])], capture_output=True, text=True,
                          check=True).stdout.split("\n")
    exported = {ln.split()[-1] for ln in syms if ln.strip()}
    assert exported == ENTRY_POINTS, exported
    dyn = subprocess.run([readelf, "-d", str(cpp_build["lib"])], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
    assert needed and not [n for n in needed if "nvinfer" in n or "tensorrt" in n], needed
    undefined = subprocess.run([nm, "-D", "--undefined-only", str(cpp_build["lib"])], capture_output=True,
                               text=True, check=True).stdout
    assert "getPluginRegistry" not in undefined  # looked up at run time in the loaded TensorRT


# Runs in a subprocess: a TensorRT abort must not kill pytest, and the Python plugin (registered by
# other tests) must not be in the registry that loads the library.
_RTX_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    import numpy as np
    from onnx import TensorProto, helper
    import compsrt.plugins as p
    from compsrt.plugins.trt_compat import ensure_rtx_library_alias, import_tensorrt
    trt = import_tensorrt(prefer="tensorrt_rtx")
    print("ALIAS", ensure_rtx_library_alias(trt), flush=True)

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR,
                            trt.ILogger.Severity.WARNING):
                print("LOG", msg.replace("\\n", " ")[:400], flush=True)

    logger = Logger()
    builder = trt.Builder(logger)
    registry = builder.get_plugin_registry()
    print("LOADED", registry.load_library({lib!r}) is not None, flush=True)
    creator = registry.get_creator("HadamardTransform", "1", "compsrt")
    print("FIELDS", ",".join(f.name for f in creator.field_names), flush=True)

    keep = []
    def fields(**kw):
        out = []
        for k, v in kw.items():
            is_float = k in ("shift", "scale")
            a = np.array([v], dtype=np.float32 if is_float else np.int32)
            keep.append(a)
            out.append(trt.PluginField(k, a, trt.PluginFieldType.FLOAT32 if is_float else trt.PluginFieldType.INT32))
        return trt.PluginFieldCollection(out)

    for name, kw in [("good", dict(n=64, width=60)), ("n48", dict(n=48)), ("width70", dict(n=64, width=70)),
                     ("scale0", dict(n=64, quantize=1, scale=0.0)), ("qmin-200", dict(n=64, quantize=1, qmin=-200)),
                     ("axis-2", dict(n=64, axis=-2))]:
        plugin = creator.create_plugin(name, fields(**kw), trt.TensorRTPhase.BUILD)
        print("CREATE", name, plugin is not None, flush=True)

    F, H, I8, I32 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.INT32
    def build(name, dt, shape, out_dt, attrs, dynamic=False):
        x = helper.make_tensor_value_info("x", dt, ["b"] + shape[1:] if dynamic else shape)
        y = helper.make_tensor_value_info("y", out_dt, None)
        node = helper.make_node("HadamardTransform", ["x"], ["y"], name="had0", **attrs)
        model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
        net = builder.create_network(0)
        parser = trt.OnnxParser(net, logger)
        if not parser.parse(model.SerializeToString()):
            print("BUILD", name, "parse-failed", flush=True)
            return
        config = builder.create_builder_config()
        if dynamic:
            prof = builder.create_optimization_profile()
            prof.set_shape("x", [1] + shape[1:], shape, [8] + shape[1:])
            config.add_optimization_profile(prof)
        engine = builder.build_serialized_network(net, config)
        out = net.get_output(0)
        nbytes = 0 if engine is None else engine.nbytes
        print("BUILD", name, nbytes, tuple(out.shape), str(out.dtype).split(".")[-1],
              engine is not None and b"HadamardTransform" in bytes(engine), flush=True)

    build("fp32", F, [2, 7, 60], F, p.onnx_node_attributes(64, 60))
    build("fp16", H, [2, 7, 64], H, p.onnx_node_attributes(64, 64))
    build("fp16-quant", H, [2, 7, 60], I8, p.onnx_node_attributes(64, 60, quantize=1, shift=0.5, scale=0.1))
    build("fp32-quant-dynamic", F, [2, 7, 120], I8, p.onnx_node_attributes(128, 120, quantize=1, scale=0.05),
          dynamic=True)
    build("int32", I32, [2, 7, 64], I32, p.onnx_node_attributes(64, 64))
    print("DONE", flush=True)
    """
)


def _rtx():
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        pytest.skip("tensorrt_rtx not installed")


def test_tensorrt_rtx_loads_the_library_and_builds_engines(cpp_build):
    _rtx()
    r = subprocess.run([sys.executable, "-c", _RTX_SCRIPT.format(repo=str(REPO), lib=str(cpp_build["lib"]))],
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "DONE" in r.stdout, out
    assert "LOADED True" in r.stdout, out
    assert f"FIELDS {','.join(FIELD_ORDER)}" in r.stdout, out
    assert "CREATE good True" in r.stdout, out
    # Bad attributes: refused, with a message naming the attribute (TensorRT's logger, or stderr).
    for name, words in [("n48", "n = 48"), ("width70", "width = 70"), ("scale0", "scale = 0"),
                        ("qmin-200", "qmin = -200"), ("axis-2", "axis = -2")]:
        assert f"CREATE {name} False" in r.stdout, out
        assert "[compsrt HadamardTransform] invalid" in out and words in out, (name, out)
    builds = {ln.split()[1]: ln.split()[2:] for ln in r.stdout.splitlines() if ln.startswith("BUILD")}
    expect = {"fp32": ("(2, 7, 64)", "FLOAT"), "fp16": ("(2, 7, 64)", "HALF"),
              "fp16-quant": ("(2, 7, 64)", "INT8"), "fp32-quant-dynamic": ("(-1, 7, 128)", "INT8")}
    for name, (shape, dtype) in expect.items():
        nbytes, *rest = builds[name]
        assert int(nbytes) > 0, (name, out)
        assert " ".join(rest) == f"{shape} {dtype} True", (name, rest)
    # An INT32 input is refused by the plugin itself, with its reason.
    assert builds["int32"] == ["parse-failed"], out
    assert "[compsrt HadamardTransform] input type INT32 is not supported" in out, out


def test_swinir_plugin_variant_engine_with_the_cpp_plugin(cpp_build, tmp_path):
    """A compressed (W4A4 deploy) SwinIR, exported with HadamardTransform nodes, built by `compsrt build
    --plugins libcompsrt_plugins.so` (the library instead of the Python plugin)."""
    _rtx()
    import torch

    from compsrt.calibration.qmodel import QuantConfig, observe_and_freeze, quantize_model
    from compsrt.export.exporter import ExportOptions, export_model
    from compsrt.models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(0)
    model = SwinIR(SwinIRConfig(scale=2, depths=(2,), num_heads=(6,))).eval()
    quantize_model(model, QuantConfig(bits=4, mode="deploy"))
    observe_and_freeze(model, torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    onnx_path = tmp_path / "plugin.onnx"
    exported = export_model(model.eval(), onnx_path, ExportOptions(tile=(16, 16), batch=1, hadamard="plugin"))
    assert sum(n.op_type == "HadamardTransform" for n in exported.model.graph.node) > 0
    plan = tmp_path / "plugin.plan"
    r = subprocess.run([sys.executable, "-m", "compsrt", "build", "--onnx", str(onnx_path), "--out", str(plan),
                        "--plugins", str(cpp_build["lib"])], capture_output=True, text=True, timeout=900,
                       cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout + r.stderr
    side = json.loads((tmp_path / "plugin.plan.json").read_text())
    assert side["plugin"]["kind"] == "library" and side["plugin"]["library"] == str(cpp_build["lib"].resolve())
    assert plan.stat().st_size == side["engine_bytes"] > 0
    assert b"HadamardTransform" in plan.read_bytes()
