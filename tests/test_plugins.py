"""CPU tests of compsrt.plugins (no GPU needed). TensorRT tests skip without tensorrt/tensorrt_rtx."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import compsrt.plugins as plugins
from compsrt.plugins import hadamard_matrix, reference_hadamard, reference_quantize
from compsrt.plugins import trt_compat
from tests.trt_scripts import TRACED_CREATOR_PRELUDE
from compsrt.plugins.core import FIELD_ORDER, HadamardAttrs
from compsrt.plugins.kernel import (
    CSRC_DIR, THREADS_PER_BLOCK, all_kernel_names, default_elems_per_thread, validate_n_width,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- math reference
@pytest.mark.parametrize("n", [1, 2, 4, 16, 64, 128, 1024])
def test_hadamard_matrix_orthonormal_sylvester(n):
    h = hadamard_matrix(n)
    assert h.dtype == np.float64 and h.shape == (n, n)
    np.testing.assert_allclose(h @ h.T, np.eye(n), atol=1e-12)
    np.testing.assert_array_equal(h, h.T)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    sign = np.vectorize(lambda a: (-1) ** bin(a).count("1"))(i & j)
    np.testing.assert_allclose(h, sign / np.sqrt(n))


def test_hadamard_matrix_rejects_non_power_of_two():
    with pytest.raises(ValueError):
        hadamard_matrix(60)


def test_reference_hadamard_zero_pads():
    x = np.random.default_rng(0).standard_normal((3, 60))
    y = reference_hadamard(x, 64)
    xp = np.concatenate([x, np.zeros((3, 4))], axis=1)
    np.testing.assert_allclose(y, xp @ hadamard_matrix(64), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1))


def test_reference_quantize_half_even_and_saturation():
    y = np.array([0.5, 1.5, 2.5, -0.5, 1000.0, -1000.0])
    np.testing.assert_array_equal(reference_quantize(y, 0.0, 1.0, -100, 90), [0, 2, 2, 0, 90, -100])
    np.testing.assert_array_equal(reference_quantize(np.array([1.0]), 0.5, 0.25), [2])


# ---------------------------------------------------------------- attributes / fields
def test_attrs_defaults_and_field_roundtrip():
    a = HadamardAttrs(n=128, width=120, quantize=1, shift=0.25, scale=0.03, qmin=-127, qmax=127)
    items = a.field_items()
    assert [k for k, _ in items] == list(FIELD_ORDER)
    assert all(v.dtype == (np.float32 if k in ("shift", "scale") else np.int32) for k, v in items)
    b = HadamardAttrs.from_fields(items + [("plugin_version", np.array(b"1"))])
    assert b == a
    d = HadamardAttrs(n=16)
    assert (d.width, d.axis, d.quantize, d.qmin, d.qmax) == (16, -1, 0, -128, 127)


@pytest.mark.parametrize(
    "kw",
    [dict(n=60), dict(n=2048), dict(n=16, width=17), dict(n=16, quantize=1, scale=0.0),
     dict(n=16, quantize=1, qmin=5, qmax=4), dict(n=16, quantize=1, qmax=200)],
)
def test_attrs_validation(kw):
    with pytest.raises(ValueError):
        HadamardAttrs(**kw)


def test_attrs_missing_n():
    with pytest.raises(ValueError):
        HadamardAttrs.from_fields([("width", np.array([4], np.int32))])


def test_shape_and_axis():
    a = HadamardAttrs(n=64, width=60)
    assert a.output_shape((2, 3, 60)) == (2, 3, 64)
    assert a.output_shape((-1, 60)) == (-1, 64)
    with pytest.raises(ValueError):
        a.output_shape((2, 3, 61))
    HadamardAttrs(n=64, width=60, axis=2).check_axis(3)
    with pytest.raises(ValueError):
        HadamardAttrs(n=64, width=60, axis=1).check_axis(3)


@pytest.mark.parametrize("quantize", [0, 1])
def test_format_negotiation(quantize):
    a = HadamardAttrs(n=16, quantize=quantize)
    lin = ["LINEAR", "LINEAR"]
    assert a.supports(0, ["FLOAT", "FLOAT"], lin)
    assert a.supports(0, ["HALF", "HALF"], lin)
    assert not a.supports(0, ["INT8", "INT8"], lin)
    assert not a.supports(0, ["BF16", "BF16"], lin)
    assert not a.supports(0, ["FLOAT", "FLOAT"], ["CHW32", "LINEAR"])
    out = "INT8" if quantize else "HALF"
    assert a.supports(1, ["HALF", out], lin)
    assert not a.supports(1, ["HALF", "FLOAT"], lin)
    assert a.output_type_name("HALF") == out


def test_kernel_names_and_limits():
    names = all_kernel_names()
    assert len(names) == 24 and len(set(names)) == 24
    assert "compsrt::hadamardRowsKernel<__half, signed char, 32>" in names
    assert [default_elems_per_thread(n, "float32") for n in (2, 16, 64, 512, 1024)] == [2, 8, 8, 16, 32]
    assert [default_elems_per_thread(n, "float16") for n in (4, 16, 64, 128, 1024)] == [4, 8, 16, 16, 32]
    validate_n_width(1024, 1)
    for bad in ((3, 3), (2048, 2048), (16, 0), (16, 17)):
        with pytest.raises(ValueError):
            validate_n_width(*bad)
    src = (CSRC_DIR / "hadamard_kernels.cuh").read_text()
    assert "int e = (inBytes >= 4) ? 8 : (n <= 16 ? 8 : 16);" in src  # keep in step with default_elems_per_thread
    assert f"constexpr int kThreadsPerBlock = {THREADS_PER_BLOCK};" in src  # both launchers use the same block


def test_onnx_node_attributes_contract():
    a = plugins.onnx_node_attributes(64, 60, quantize=True, shift=0.5, scale=0.1)
    assert a["plugin_version"] == "1" and a["plugin_namespace"] == "compsrt"
    assert a["n"] == 64 and a["width"] == 60 and a["axis"] == -1 and a["quantize"] == 1
    assert set(a) == set(FIELD_ORDER) | {"plugin_version", "plugin_namespace"}
    assert plugins.onnx_node_attributes(16)["quantize"] == 0


# ---------------------------------------------------------------- trt_compat
def test_import_tensorrt_error_message(monkeypatch):
    real = importlib.import_module

    def fake(name, *a, **k):
        if name in ("tensorrt", "tensorrt_rtx"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(trt_compat.importlib, "import_module", fake)
    with pytest.raises(trt_compat.TensorRTUnavailableError, match="tensorrt-rtx-cu13==1.7.1.116"):
        trt_compat.import_tensorrt()
    assert plugins.register_python_plugin() is False


def test_import_tensorrt_prefer_validation():
    with pytest.raises(ValueError):
        trt_compat.import_tensorrt(prefer="onnxruntime")


# ---------------------------------------------------------------- nvcc (CI has it, no GPU needed)
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_nvcc_compiles_kernel_source(tmp_path):
    out = tmp_path / "hadamard_launch.o"
    r = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-c", str(CSRC_DIR / "hadamard_launch.cu"),
                        "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0


# ---------------------------------------------------------------- TensorRT (tensorrt or tensorrt_rtx)
def _trt():
    try:
        return trt_compat.import_tensorrt()
    except trt_compat.TensorRTUnavailableError:
        pytest.skip("neither tensorrt nor tensorrt_rtx installed")


_KEEPALIVE = []  # PluginField does not own its numpy buffer


def _fc(trt, attrs):
    from compsrt.plugins.core import INT_FIELDS

    items = attrs.field_items()
    _KEEPALIVE.append(items)
    return trt.PluginFieldCollection([
        trt.PluginField(k, v, trt.PluginFieldType.INT32 if k in INT_FIELDS else trt.PluginFieldType.FLOAT32)
        for k, v in items
    ])


def test_trt_creator_registered_and_fields():
    trt = _trt()
    assert plugins.register_python_plugin(trt) is True
    assert plugins.register_python_plugin(trt) is True  # idempotent
    creator = trt.get_plugin_registry().get_creator("HadamardTransform", "1", "compsrt")
    assert creator is not None
    assert creator.name == "HadamardTransform" and creator.plugin_version == "1"
    assert creator.plugin_namespace == "compsrt"
    assert [f.name for f in creator.field_names] == list(FIELD_ORDER)


def test_trt_plugin_field_roundtrip_and_negotiation():
    trt = _trt()
    from compsrt.plugins.trt_plugin import make_plugin_classes

    _, creator_cls = make_plugin_classes(trt)
    creator = creator_cls()
    attrs = HadamardAttrs(n=128, width=120, quantize=1, shift=-0.5, scale=0.0625, qmin=-127, qmax=127)
    plug = creator.create_plugin("h", _fc(trt, attrs), trt.TensorRTPhase.BUILD)
    assert plug.attrs == attrs
    assert (plug.plugin_name, plug.plugin_version, plug.plugin_namespace) == ("HadamardTransform", "1", "compsrt")
    again = creator.create_plugin("h2", plug.get_fields_to_serialize(), trt.TensorRTPhase.RUNTIME)
    assert again.attrs == attrs
    clone = plug.clone()
    assert clone.attrs == attrs and clone is not plug and clone.attrs is not plug.attrs
    assert plug.get_output_data_types([trt.DataType.HALF]) == [trt.DataType.INT8]

    def io(t0, t1, fmt=trt.TensorFormat.LINEAR):
        return [SimpleNamespace(desc=SimpleNamespace(type=t0, format=fmt)),
                SimpleNamespace(desc=SimpleNamespace(type=t1, format=fmt))]

    assert plug.supports_format_combination(0, io(trt.DataType.HALF, trt.DataType.INT8), 1)
    assert plug.supports_format_combination(1, io(trt.DataType.HALF, trt.DataType.INT8), 1)
    assert not plug.supports_format_combination(1, io(trt.DataType.HALF, trt.DataType.HALF), 1)
    assert not plug.supports_format_combination(0, io(trt.DataType.INT32, trt.DataType.INT8), 1)
    assert not plug.supports_format_combination(0, io(trt.DataType.FLOAT, trt.DataType.INT8, trt.TensorFormat.HWC), 1)

    plain = creator.create_plugin("p", _fc(trt, HadamardAttrs(n=16, width=10)), trt.TensorRTPhase.BUILD)
    assert plain.get_output_data_types([trt.DataType.FLOAT]) == [trt.DataType.FLOAT]
    assert plain.supports_format_combination(1, io(trt.DataType.FLOAT, trt.DataType.FLOAT), 1)
    assert plain.get_workspace_size([], []) == 0


_BUILD_SCRIPT = TRACED_CREATOR_PRELUDE + textwrap.dedent(
    """
    from onnx import TensorProto, helper
    import compsrt.plugins as p
    assert p.register_python_plugin(trt)
    quant = {quant}
    dt = TensorProto.FLOAT16 if {fp16} else TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", dt, [2, 7, 60])
    y = helper.make_tensor_value_info("y", TensorProto.INT8 if quant else dt, [2, 7, 64])
    node = helper.make_node("HadamardTransform", ["x"], ["y"], name="had0",
                            **p.onnx_node_attributes(64, 60, quantize=quant, shift=0.5, scale=0.1))
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    parser = trt.OnnxParser(net, logger)
    ok = parser.parse(model.SerializeToString())
    print("PARSED", ok, [parser.get_error(i).desc() for i in range(parser.num_errors)], flush=True)
    out = net.get_output(0)
    print("OUTPUT", tuple(out.shape), out.dtype, flush=True)
    engine = builder.build_serialized_network(net, builder.create_builder_config())
    print("ENGINE_BYTES", 0 if engine is None else engine.nbytes, flush=True)
    # The plugin's fields travel inside the engine: check they are there.
    blob = bytes(engine)
    print("ENGINE_HAS_PLUGIN", b"HadamardTransform" in blob and b"compsrt" in blob, flush=True)
    """
)


@pytest.mark.parametrize("fp16,quant", [(False, False), (True, True)], ids=["fp32", "fp16-quant"])
def test_onnx_parser_maps_node_and_builds_engine(fp16, quant):
    """ONNX HadamardTransform node -> registry lookup -> plugin -> engine (run in a subprocess: a TensorRT
    abort must not kill pytest)."""
    _trt()
    r = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT.format(repo=str(REPO), quant=quant, fp16=fp16)],
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    # The parser found our creator (namespace/version attributes) and mapped the ONNX attributes to fields.
    assert "CREATED had0" in r.stdout, out
    created = next(line for line in r.stdout.splitlines() if line.startswith("CREATED"))
    assert "n=64" in created and "width=60" in created and f"quantize={int(quant)}" in created, created
    if quant:
        assert "scale=0.1" in created and "shift=0.5" in created
    assert r.returncode == 0, out
    assert "OUTPUT (2, 7, 64)" in r.stdout, out
    engine_bytes = int(r.stdout.split("ENGINE_BYTES")[1].split()[0])
    assert engine_bytes > 0, out
    assert "ENGINE_HAS_PLUGIN True" in r.stdout, out


def test_rtx_library_alias(tmp_path):
    """The TensorRT-RTX parser dlopen()s the unversioned libtensorrt_rtx.so when importing an IPluginV3
    node (the wheels ship only .so.1): ensure_rtx_library_alias creates the symlink, idempotently."""
    (tmp_path / "libtensorrt_rtx.so.1").write_bytes(b"")
    assert trt_compat.ensure_rtx_library_alias(libdir=tmp_path, create=False) == "missing"
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    assert trt_compat.ensure_rtx_library_alias(libdir=tmp_path) == "created"
    alias = tmp_path / "libtensorrt_rtx.so"
    assert alias.is_symlink() and alias.resolve() == (tmp_path / "libtensorrt_rtx.so.1").resolve()
    assert trt_compat.ensure_rtx_library_alias(libdir=tmp_path) == "present"
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "libtensorrt_rtx.so.1").write_bytes(b"")
    ro.chmod(0o555)
    try:
        if not os.access(ro, os.W_OK):  # root ignores the mode
            assert trt_compat.ensure_rtx_library_alias(libdir=ro) == "missing"
    finally:
        ro.chmod(0o755)
    fake_full = SimpleNamespace(__name__="tensorrt")
    assert trt_compat.ensure_rtx_library_alias(fake_full, libdir=tmp_path) == "not-needed"


def test_cpp_plugin_matches_python_contract():
    """The C++ plugin (not compiled in CI: needs TensorRT headers) keeps the same name/version/namespace/fields."""
    cpp = (REPO / "compsrt/plugins/cpp/HadamardPlugin.cpp").read_text()
    assert 'kNAME = "HadamardTransform"' in cpp and 'kVERSION = "1"' in cpp and 'kNAMESPACE = "compsrt"' in cpp
    for name in FIELD_ORDER:
        assert f'"{name}"' in cpp
    assert "getCreators" in cpp and "setLoggerFinder" in cpp
    cmake = (REPO / "compsrt/plugins/cpp/CMakeLists.txt").read_text()
    assert "hadamard_launch.cu" in cmake and "TENSORRT_ROOT" in cmake
    assert '#include "hadamard_kernels.cuh"' in (CSRC_DIR / "hadamard_launch.cu").read_text()
