"""The command line a new user meets: bad inputs end in one line (exit 2), outputs are readable by others,
options share one vocabulary and every option states its default (issue 16)."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compsrt.artifacts import sidecar_path
from compsrt.cli import build_parser, main
from compsrt.models.swinir import SwinIR, SwinIRConfig

SAMPLE = Path(__file__).resolve().parents[1] / "compsrt" / "assets" / "sample.png"
TILE = 32


def _trt_or_skip():
    try:
        from compsrt.plugins.trt_compat import import_tensorrt

        return import_tensorrt()
    except ImportError:
        pytest.skip("neither tensorrt nor tensorrt_rtx is importable")


def _tiny(scale: int) -> SwinIR:
    torch.manual_seed(0)
    return SwinIR(SwinIRConfig(scale=scale, depths=(2,), num_heads=(6,))).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Bad model files (a PNG named .onnx/.pth, 0-byte files, random bytes) and small good ones."""
    d = tmp_path_factory.mktemp("files")
    f = {"image": d / "in.png", "png.onnx": d / "png.onnx", "empty.onnx": d / "empty.onnx",
         "random.pth": d / "random.pth", "empty.pth": d / "empty.pth", "png.pth": d / "png.pth"}
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(f["image"])
    f["png.onnx"].write_bytes(SAMPLE.read_bytes())
    f["png.pth"].write_bytes(SAMPLE.read_bytes())
    f["empty.onnx"].write_bytes(b"")
    f["empty.pth"].write_bytes(b"")
    f["random.pth"].write_bytes(np.random.default_rng(1).bytes(4096))
    # an x4 compressed checkpoint of a tiny SwinIR (no calibration needed to load and run it)
    from compsrt.calibration.checkpoint import save_checkpoint
    from compsrt.calibration.qmodel import QuantConfig, quantize_model

    f["x4.pt"] = save_checkpoint(quantize_model(_tiny(4), QuantConfig(bits=4, mode="deploy")), {}, d / "x4.pt")
    # the tiny x2 model exported at a fixed tile
    import warnings

    f["x2.onnx"] = d / "x2.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_tiny(2), (torch.rand(1, 3, TILE, TILE),), str(f["x2.onnx"]), input_names=["lr"],
                          output_names=["sr"], opset_version=17, dynamo=False)
    sidecar_path(f["x2.onnx"]).write_text(json.dumps({"scale": 2, "tile": [TILE, TILE], "window_size": 8,
                                                              "batch": 1}))
    from compsrt.runtime.selftest import hadamard_onnx

    f["hadamard.onnx"] = d / "hadamard.onnx"
    hadamard_onnx(f["hadamard.onnx"])
    # the smallest graph TensorRT builds in a blink, without a plugin (registering the Python plugin here
    # would leak into other tests that need an empty plugin registry)
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    f["relu.onnx"] = d / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(f["relu.onnx"]))
    return f


def _one_line_error(capsys, argv, *needles) -> str:
    rc = main(argv)  # usage errors too return 2 (argparse's SystemExit is caught)
    err = capsys.readouterr().err.strip()
    assert rc == 2, (argv, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


# -- 1. bad model files through every command that takes a model ---------------------------------------------
BAD_ONNX = ("png.onnx", "empty.onnx")
BAD_PTH = ("random.pth", "empty.pth", "png.pth")


@pytest.mark.parametrize("bad", BAD_ONNX)
@pytest.mark.parametrize("cmd", ["build", "inspect", "upscale", "profile", "export-check"])
def test_bad_onnx_one_line_error(files, tmp_path, capsys, cmd, bad):
    if cmd in ("build", "export-check"):
        _trt_or_skip()
    path = str(files[bad])
    argv = {"build": ["build", "--onnx", path, "--out", str(tmp_path / "e.plan")],
            "inspect": ["inspect", path],
            "export-check": ["export-check", path],
            "upscale": ["upscale", str(files["image"]), str(tmp_path / "o.png"), "--onnx", path],
            "profile": ["profile", "--backend", "onnxruntime", "--onnx", path, "--size", "16x16"]}[cmd]
    _one_line_error(capsys, argv, bad)
    assert not list(tmp_path.iterdir()), "nothing may be written for a bad input"


@pytest.mark.parametrize("bad", BAD_PTH)
@pytest.mark.parametrize("cmd", ["upscale-weights", "upscale-checkpoint", "profile", "export", "eval", "eval-quant"])
def test_bad_weights_one_line_error(files, tmp_path, capsys, cmd, bad):
    path, img, out = str(files[bad]), str(files["image"]), str(tmp_path / "o.png")
    argv = {"upscale-weights": ["upscale", img, out, "--weights", path],
            "upscale-checkpoint": ["upscale", img, out, "--checkpoint", path],
            "profile": ["profile", "--weights", path, "--size", "16x16"],
            "export": ["export", "--checkpoint", path, "--tile", "16", "--out", str(tmp_path / "m.onnx")],
            "eval": ["eval", "--weights", path, "--datasets", "Set5"],
            "eval-quant": ["eval", "--quant", path, "--datasets", "Set5"]}[cmd]
    _one_line_error(capsys, argv, bad)
    assert not list(tmp_path.iterdir())


def test_empty_onnx_is_not_an_empty_summary(files, capsys):
    _one_line_error(capsys, ["inspect", str(files["empty.onnx"])], "no graph")


# -- 2. the pixel limit: Pillow's own bomb check never overrides ours --------------------------------------------
def _big_png(path: Path, w: int, h: int) -> Path:
    """A valid PNG header (IHDR) claiming w x h pixels; nothing beyond the header is needed to refuse it."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def test_pixel_limit_names_flag_and_can_be_raised_past_pillow(tmp_path, monkeypatch):
    from compsrt.errors import CompsrtError
    from compsrt.images import load_image

    big = _big_png(tmp_path / "big.png", 10_000, 10_000)  # 100 MP: above Pillow's 89.5 MP default
    with pytest.raises(CompsrtError, match=r"--max-pixels.*COMPSRT_MAX_PIXELS"):
        load_image(big)
    # raised limit: Pillow must not refuse it first; the (fake) pixel data then fails to decode, as it should
    with pytest.raises(CompsrtError, match="corrupt or truncated"):
        load_image(big, limit=200_000_000)
    monkeypatch.setenv("COMPSRT_MAX_PIXELS", "200000000")
    with pytest.raises(CompsrtError, match="corrupt or truncated"):
        load_image(big)
    from PIL import Image as PILImage

    assert PILImage.MAX_IMAGE_PIXELS == 89478485  # restored: other Pillow users keep their protection


# -- 3. file modes under umask 022 ------------------------------------------------------------------------------
@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_written_files_follow_umask(files, tmp_path, capsys, umask022):
    out = tmp_path / "o"
    assert main(["upscale", str(files["image"]), str(out / "up.png"), "--onnx", str(files["x2.onnx"])]) == 0
    assert main(["profile", "--backend", "onnxruntime", "--onnx", str(files["x2.onnx"]), "--size", "16x16",
                 "--iters", "1", "--warmup", "0", "--out", str(out / "p.json")]) == 0
    from compsrt.calibration.checkpoint import save_checkpoint
    from compsrt.calibration.qmodel import QuantConfig, quantize_model

    save_checkpoint(quantize_model(_tiny(2), QuantConfig(bits=4, mode="deploy")), {}, out / "c.pt")
    assert main(["export", "--checkpoint", str(out / "c.pt"), "--tile", "16", "--hadamard", "matmul",
                 "--out", str(out / "m.onnx")]) == 0
    try:
        _trt_or_skip()
        assert main(["build", "--onnx", str(files["relu.onnx"]), "--out", str(out / "h.plan"), "--plugins", "none"]) == 0
    except pytest.skip.Exception:
        pass
    capsys.readouterr()
    written = sorted(p for p in out.iterdir())
    assert {p.suffix for p in written} >= {".png", ".json", ".pt", ".onnx"}
    for p in written:
        assert _mode(p) == 0o644, (p.name, oct(_mode(p)))
    os.umask(0o077)
    assert main(["upscale", str(files["image"]), str(out / "private.png"), "--onnx", str(files["x2.onnx"])]) == 0
    assert _mode(out / "private.png") == 0o600


# -- 4. a failed build leaves nothing behind ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["garbage", "png", "no-plugin-library"])
def test_failed_build_leaves_no_files(files, tmp_path, capsys, case):
    _trt_or_skip()
    garbage = tmp_path / "src" / "garbage.onnx"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x08\x07garbage" * 50)
    onnx_path = {"garbage": garbage, "png": files["png.onnx"], "no-plugin-library": files["hadamard.onnx"]}[case]
    out = tmp_path / "out" / "e.plan"
    argv = ["build", "--onnx", str(onnx_path), "--out", str(out)]
    if case == "no-plugin-library":
        argv += ["--plugins", "/nonexistent/lib.so"]
    _one_line_error(capsys, argv)
    assert not out.parent.exists() or not list(out.parent.iterdir())


# -- 5. conflicting scales are refused alike ---------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["upscale", "{image}", "{tmp}/o.png", "--checkpoint", "{x4_pt}", "--scale", "2"],
    ["upscale", "{image}", "{tmp}/o.png", "--onnx", "{x2_onnx}", "--scale", "4"],
    ["profile", "--checkpoint", "{x4_pt}", "--scale", "3", "--size", "16x16"],
    ["profile", "--backend", "onnxruntime", "--onnx", "{x2_onnx}", "--scale", "3", "--size", "16x16"],
    ["eval", "--quant", "{x4_pt}", "--scale", "2", "--datasets", "Set5"],
    ["upscale", "{image}", "{tmp}/o.png", "--weights", "{x2_pth}", "--scale", "4"],
    ["eval", "--weights", "{x2_pth}", "--scale", "3", "--datasets", "Set5"],
])
def test_conflicting_scale_refused(files, x2_weights, tmp_path, capsys, argv):
    names = {k.replace(".", "_"): str(v) for k, v in files.items()}
    argv = [a.format(tmp=tmp_path, x2_pth=x2_weights, **names) for a in argv]
    err = _one_line_error(capsys, argv)
    assert re.search(r"is a x\d model; pass --scale \d or omit --scale", err), err
    assert not (tmp_path / "o.png").exists()


def test_scale_taken_from_the_model_when_omitted(files, tmp_path, capsys):
    assert main(["upscale", str(files["image"]), str(tmp_path / "o.png"), "--checkpoint", str(files["x4.pt"]),
                 "--tile", "16"]) == 0
    assert Image.open(tmp_path / "o.png").size == (40, 48)


# -- 6. selftest: a skipped key check has its own exit status ------------------------------------------------------
def test_selftest_status_when_key_check_skipped(capsys):
    from compsrt.runtime.selftest import EXIT_NOT_VERIFIED, Report, _finish

    rep = Report()
    rep.add("PASS", "engine build (small SwinIR)")
    rep.add("SKIP", "TensorRT vs ONNX Runtime", "no usable CUDA device here")
    assert _finish(rep) == EXIT_NOT_VERIFIED != 0
    assert EXIT_NOT_VERIFIED not in (1, 2)
    assert "NOT verified" in capsys.readouterr().out
    rep.add("FAIL", "HadamardTransform plugin")
    assert _finish(rep) == 1
    rep = Report()
    rep.add("PASS", "TensorRT vs ONNX Runtime")
    assert _finish(rep) == 0


# -- 7. pipeline console lines ------------------------------------------------------------------------------------
def test_pipeline_console_lines_are_whole(capsys):
    from compsrt.pipeline import calibration_line, say

    long = "no usable CUDA device/driver here (" + "x" * 300 + "); install pycuda or cuda-python and check the driver"
    say("execution not run here", long)
    assert capsys.readouterr().out.strip().endswith("check the driver")
    line = calibration_line({"iters_done": 7, "stopped_early": True}, 50, 150.0, 151.2)
    assert "stopped early" in line and "7 of 50" in line and "--calib-seconds" in line
    assert "stopped" not in calibration_line({"iters_done": 50, "stopped_early": False}, 50, 150.0, 40.0)


# -- 8. argument parsing: negative sizes, tile checked before warm-up ---------------------------------------------
def test_negative_size_is_one_line(capsys):
    _one_line_error(capsys, ["profile", "--size", "-8x8"], "--size", "-8x8")
    _one_line_error(capsys, ["profile", "--size", "0x8"], "--size")


def test_profile_bad_tile_refused_before_warmup(files, capsys):
    err = _one_line_error(capsys, ["profile", "--checkpoint", str(files["x4.pt"]), "--tile", "7", "--size", "16x16"],
                          "tile")
    assert "warm-up" not in err


def test_argparse_errors_are_one_line(capsys):
    assert main(["profile", "--nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--nope" in err and "--help" in err


# -- vocabulary -------------------------------------------------------------------------------------------------------
def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action


def test_every_option_has_help_and_states_its_default():
    problems = []
    sub = _subparsers(build_parser())
    for name, p in sub.choices.items():
        for a in p._actions:
            if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
                continue
            flag = a.option_strings[0] if a.option_strings else a.dest
            if not a.help:
                problems.append(f"{name} {flag}: no help")
                continue
            flagless = isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)) \
                or isinstance(a.default, bool)
            if not a.option_strings or a.required or flagless:
                continue
            text = a.help % {"default": a.default} if "%(default)" in a.help else a.help
            if "default" not in text:
                problems.append(f"{name} {flag}: default not stated")
            elif a.default is not None and not isinstance(a.default, bool):
                shown = {str(a.default)}
                if isinstance(a.default, tuple):
                    shown |= {"x".join(map(str, a.default)), "x".join(map(str, a.default[::-1]))}
                if isinstance(a.default, float):
                    shown.add(f"{a.default:g}")
                if not any(s in text for s in shown):
                    problems.append(f"{name} {flag}: help states another default than {a.default!r}")
    assert not problems, "\n".join(problems)


def test_every_subcommand_help_renders(capsys):
    for name in _subparsers(build_parser()).choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0 and f"usage: compsrt {name}" in capsys.readouterr().out


def test_one_vocabulary_across_subcommands():
    sub = _subparsers(build_parser())
    opts = {name: {s: a for a in p._actions for s in a.option_strings} for name, p in sub.choices.items()}
    for name, o in opts.items():
        if "--json" in o:  # a flag that prints JSON on stdout, everywhere
            assert o["--json"].nargs in (0, "?") and o["--json"].const is True, name
        if "--device" in o:
            assert "auto" in o["--device"].help, name
        assert "--plugin" not in o or o["--plugin"].help == argparse.SUPPRESS, name
        assert "--data-root" not in o or o["--data-root"].help == argparse.SUPPRESS, name


def test_tile_spellings(files, tmp_path, capsys):
    from compsrt.cli.args import parse_tile

    assert parse_tile("64") == (64, 64) and parse_tile("96x64") == (64, 96)  # WxH in, (h, w) inside
    out = tmp_path / "m.onnx"
    from compsrt.calibration.checkpoint import save_checkpoint
    from compsrt.calibration.qmodel import QuantConfig, quantize_model

    ckpt = save_checkpoint(quantize_model(_tiny(2), QuantConfig(bits=4, mode="deploy")), {}, tmp_path / "c.pt")
    assert main(["export", "--checkpoint", str(ckpt), "--tile", "24x16", "--hadamard", "matmul", "--out", str(out)]) == 0
    assert json.loads(sidecar_path(out).read_text())["tile"] == [16, 24]
    assert "tile 24x16" in capsys.readouterr().out
    args = build_parser().parse_args(["export", "--checkpoint", str(ckpt), "--tile", "16", "24", "--out", str(out)])
    assert args.tile == (16, 24)  # the old H W spelling, still read
    err = capsys.readouterr().err
    assert "deprecated" in err and "--tile 24x16" in err
    args = build_parser().parse_args(["profile", "--json", str(out), "--size", "8x8"])
    assert args.out == out and args.json is False and "--out" in capsys.readouterr().err
    args = build_parser().parse_args(["export-check", str(out), "--plugin"])
    assert args.plugins == "python" and "--plugins python" in capsys.readouterr().err


def test_help_version_bare_and_order(capsys):
    from compsrt import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: compsrt" in out
    order = [m.group(1) for m in re.finditer(r"^    (\S+)\s", out, re.M)]
    pipeline = ["calibrate", "pack", "eval", "export", "inspect", "export-check", "export-parity", "build", "upscale",
                "profile", "selftest", "pipeline"]
    assert [c for c in order if c in pipeline] == pipeline, order


def test_build_and_upscale_json_summaries(files, tmp_path, capsys):
    assert main(["upscale", str(files["image"]), str(tmp_path / "o.png"), "--onnx", str(files["x2.onnx"]), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rows[-1]["outputs"][0]["output_size"] == [20, 24] and rows[-1]["failed"] == 0
    _trt_or_skip()
    plan = tmp_path / "h.plan"
    assert main(["build", "--onnx", str(files["relu.onnx"]), "--out", str(plan), "--plugins", "none", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["engine"] == str(plan) and s["engine_bytes"] == plan.stat().st_size and "seconds" in s


def test_plugin_variant_error_names_hadamard_matmul(files, tmp_path, capsys):
    plugin = tmp_path / "plugin.onnx"
    assert main(["export", "--checkpoint", str(files["x4.pt"]), "--tile", "16", "--out", str(plugin)]) == 0
    _one_line_error(capsys, ["upscale", str(files["image"]), str(tmp_path / "o.png"), "--onnx", str(plugin)],
                    "HadamardTransform", "--hadamard matmul")


def test_help_and_missing_input_do_not_import_torch():
    """Start-up stays light: --help and a missing-file error never import torch, onnx or TensorRT."""
    code = ("import sys\nfrom compsrt.cli import main\n"
            "for argv in (['--help'], ['upscale', 'nope.png', 'o.png'], ['export', '--checkpoint', 'nope.pt', "
            "'--tile', '64', '--out', 'x.onnx'], ['build', '--onnx', 'nope.onnx', '--out', 'x.plan'], "
            "['inspect', 'nope.onnx'], ['calibrate', '--scale', '4', '--bits', '4', '--weights', 'nope.pth', '--out', 'x.pt']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'tensorrt_rtx', 'matplotlib') "
            "if m in sys.modules)\nprint('HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    assert r.stderr.count("does not exist") == 5, r.stderr


# -- 9. --tile: one definition in every command, the old H W spelling, the size limit -----------------------------
def _tile_argv(files, tmp_path, tile: list[str]) -> dict[str, list[str]]:
    """A minimal command line of every command that takes --tile (a new one must be added here)."""
    ck, img, out = str(files["x4.pt"]), str(files["image"]), str(tmp_path / "o")
    return {"export": ["export", "--checkpoint", ck, "--out", out, "--tile", *tile],
            "export-parity": ["export-parity", "--checkpoint", ck, "--tile", *tile],
            "build": ["build", "--onnx", str(files["x2.onnx"]), "--out", out, "--tile", *tile],
            "upscale": ["upscale", img, out, "--tile", *tile],
            "profile": ["profile", "--tile", *tile],
            "triton-repo": ["triton-repo", "--out", out, "--tile", *tile],
            "selftest": ["selftest", "--tile", *tile],
            "pipeline": ["pipeline", "--tile", *tile]}


def _commands_with(option: str) -> set[str]:
    sub = _subparsers(build_parser())
    return {name for name, p in sub.choices.items() if any(option in a.option_strings for a in p._actions)}


def test_every_tile_option_reads_the_old_h_w_spelling(files, tmp_path, capsys):
    cases = _tile_argv(files, tmp_path, ["16", "24"])
    assert set(cases) == _commands_with("--tile")
    for name, argv in cases.items():
        square = name in ("selftest", "pipeline")
        if square:
            argv = argv[:-1] + ["16"]
        args = build_parser().parse_args(argv)
        assert args.tile == (16 if square else (16, 24)), name
        err = capsys.readouterr().err
        assert "deprecated" in err and ("--tile 16x16" if square else "--tile 24x16") in err, (name, err)
    # a tile before the positional arguments does not swallow them
    args = build_parser().parse_args(["upscale", "--tile", "64", str(files["image"]), str(tmp_path / "o.png")])
    assert args.tile == (64, 64) and args.output == tmp_path / "o.png"


def test_oversize_tile_refused_up_front_by_every_command_naming_the_limit(files, tmp_path, capsys):
    from compsrt.models.limits import HEADS, MAX_TILE_PIXELS, WINDOW

    cfg = SwinIRConfig()
    assert set(cfg.num_heads) == {HEADS} and cfg.window_size == WINDOW  # the limit follows the model
    assert MAX_TILE_PIXELS * HEADS * WINDOW**2 < 2**31 <= (MAX_TILE_PIXELS + 1) * HEADS * WINDOW**2
    for name, argv in _tile_argv(files, tmp_path, ["100000"]).items():
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1, (name, err)
        assert "too large" in err and f"{MAX_TILE_PIXELS:,}" in err and "2^31" in err, (name, err)
    assert not list(tmp_path.iterdir())
    build_parser().parse_args(["profile", "--tile", "2360"])  # just below the limit: accepted
    # the export's batch multiplies the tile
    from compsrt.errors import CompsrtError
    from compsrt.export.exporter import ExportOptions

    with pytest.raises(CompsrtError, match="at batch 4"):
        ExportOptions(tile=(2048, 2048), batch=4).validate()


# -- 10. --plugins: python|none|PATH in every command that has it -----------------------------------------------------
def test_every_plugins_option_takes_python_none_or_a_library_path(files, tmp_path, capsys):
    lib = tmp_path / "libplugins.so"
    lib.write_bytes(b"not a library")
    argv = {"build": ["build", "--onnx", str(files["relu.onnx"]), "--out", str(tmp_path / "e.plan")],
            "export-check": ["export-check", str(files["relu.onnx"])],
            "selftest": ["selftest"], "serve": ["serve", str(tmp_path)]}
    assert set(argv) == _commands_with("--plugins")
    for name, base in argv.items():
        for value in ("python", "none", str(lib)):
            assert build_parser().parse_args(base + ["--plugins", value]).plugins == value, (name, value)
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(base + ["--plugins", str(tmp_path / "missing.so")])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and len(err.splitlines()) == 1 and "missing.so does not exist" in err, err
        assert "--plugins python" in err, err
    _one_line_error(capsys, ["serve", str(tmp_path), "--plugins", "python"], "tensorrt backend", "--plugins path")


def test_export_check_names_the_plugin_a_graph_needs(files, tmp_path, capsys):
    """A plugin graph checked without a plugin: one line naming the plugin and the fix, before TensorRT's parser
    (which printed one "Plugin not found" line per node and exited 1)."""
    plugin = tmp_path / "plugin.onnx"
    assert main(["export", "--checkpoint", str(files["x4.pt"]), "--tile", "16", "--out", str(plugin)]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["export-check", str(plugin)], "compsrt::HadamardTransform", "nodes)",
                    "--plugins python", "--plugins PATH")
    _trt_or_skip()
    _one_line_error(capsys, ["export-check", str(plugin), "--plugins", str(files["image"])],
                    "cannot load plugin library")


def test_repeated_parser_errors_are_collapsed():
    from compsrt.runtime.engine import _collapse

    assert _collapse(["Plugin not found"] * 192 + ["other"]) == ["Plugin not found (x192)", "other"]


# -- 11. triton-repo: one-line refusals, nothing left behind, the shared --scale check --------------------------------
def _dynamic_onnx(path: Path) -> Path:
    """An image graph that is not compsrt's: dynamic sizes, no sidecar, so no scale to read."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H2", "W2"])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    onnx.save(helper.make_model(helper.make_graph([node], "up", [x], [y], [scales]),
                                opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize("case", ["empty-onnx", "foreign-onnx-no-scale", "fixed-batch", "contradicting-scale",
                                  "bad-tile", "bad-device"])
def test_triton_repo_refusals_are_one_line_and_leave_nothing(files, tmp_path, capsys, case):
    out = tmp_path / "new" / "repo"
    ck = str(files["x4.pt"])
    argv, needles = {
        "empty-onnx": (["--onnx", str(files["empty.onnx"])], ["empty"]),
        "foreign-onnx-no-scale": (["--onnx", str(_dynamic_onnx(tmp_path / "foreign.onnx"))], ["pass --scale"]),
        "fixed-batch": (["--onnx", str(files["x2.onnx"])], ["--batch dynamic"]),
        "contradicting-scale": (["--checkpoint", ck, "--scale", "2"],
                                ["is a x4 model; pass --scale 4 or omit --scale"]),
        "bad-tile": (["--checkpoint", ck, "--tile", "12"], ["multiple of 8"]),
        "bad-device": (["--checkpoint", ck, "--device", "gpu0"], ["not a device", "auto, cpu, cuda or cuda:N"]),
    }[case]
    _one_line_error(capsys, ["triton-repo", "--out", str(out), *argv], *needles)
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_triton_repo_failed_rewrite_keeps_the_previous_repository(files, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["triton-repo", "--checkpoint", str(files["x4.pt"]), "--out", str(repo), "--tile", "16"]) == 0
    before = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert json.loads((repo / "compsrt_repo.json").read_text())["tile_model"]["scale"] == 4
    capsys.readouterr()
    _one_line_error(capsys, ["triton-repo", "--checkpoint", str(files["x4.pt"]), "--out", str(repo), "--scale", "3"])
    assert {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert main(["triton-repo", "--onnx", str(_dynamic_onnx(tmp_path / "f.onnx")), "--scale", "2",
                 "--out", str(repo), "--tile", "16x24"]) == 0  # rewritten in place: another model, same folder
    m = json.loads((repo / "compsrt_repo.json").read_text())
    assert m["tile_model"]["backend"] == "onnxruntime" and m["tile_model"]["scale"] == 2
    assert m["tile_model"]["tile"] == [24, 16] and not (repo / "compsrt_tile" / "1" / "model.pt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- 12. export-parity: the ONNX must come from the checkpoint; a verdict line ----------------------------------------
def test_export_parity_refuses_an_onnx_of_another_checkpoint(files, tmp_path, capsys):
    from compsrt.calibration.checkpoint import save_checkpoint
    from compsrt.calibration.qmodel import QuantConfig, quantize_model

    onnx_a = tmp_path / "a.onnx"
    assert main(["export", "--checkpoint", str(files["x4.pt"]), "--tile", "16", "--hadamard", "matmul",
                 "--batch", "dynamic", "--out", str(onnx_a)]) == 0
    torch.manual_seed(1)
    other = SwinIR(SwinIRConfig(scale=4, depths=(2,), num_heads=(6,))).eval()
    ckpt_b = save_checkpoint(quantize_model(other, QuantConfig(bits=4, mode="deploy")), {}, tmp_path / "b.pt")
    bench = tmp_path / "bench" / "Tiny"  # a one-image benchmark: without the check the comparison would run
    (bench / "HR").mkdir(parents=True)
    (bench / "LR_bicubic" / "X4").mkdir(parents=True)
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bench / "HR" / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(bench / "LR_bicubic" / "X4" / "ax4.png")
    capsys.readouterr()
    _one_line_error(capsys, ["export-parity", "--checkpoint", str(ckpt_b), "--onnx", str(onnx_a), "--dataset", "Tiny",
                             "--benchmarks", str(tmp_path / "bench"), "--no-floor"],
                    "a.onnx was exported from another checkpoint", "b.pt", "omit --onnx")


def test_parity_verdict_lines():
    from compsrt.runtime.parity import parity_verdict

    base = {"tol": 1e-3, "frac_off": 0.758, "n_off": 758, "mode": "deploy", "floor": {"frac_off": 0.635}}
    good = {"forced": {"off_boundary": 0, "out_max_abs": 3e-6, "flips": 40, "first_off_boundary_site": None}}
    bad = {"forced": {"off_boundary": 5, "out_max_abs": 0.2, "flips": 40, "first_off_boundary_site": "layers.0.x"}}
    v = parity_verdict(base | {"site_check": good})
    assert v["pass"] is True and "75.8 %" in v["reason"] and "noise floor 63.5 %" in v["reason"]
    v = parity_verdict(base | {"site_check": bad})
    assert v["pass"] is False and "layers.0.x" in v["reason"] and "export error" in v["reason"]
    assert parity_verdict(base | {"site_check": None})["pass"] is None
    assert parity_verdict(base | {"site_check": None, "mode": "fp"})["pass"] is False
    assert parity_verdict(base | {"n_off": 0, "site_check": None})["pass"] is True


def test_export_out_of_memory_below_the_tile_limit_is_one_line(files, tmp_path, capsys, monkeypatch):
    import compsrt.export.exporter as exporter

    def no_memory(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 40000000000 bytes.")

    monkeypatch.setattr(exporter, "build_onnx", no_memory)
    _one_line_error(capsys, ["export", "--checkpoint", str(files["x4.pt"]), "--tile", "2048", "--out",
                             str(tmp_path / "m.onnx")], "not enough memory to export tile 2048x2048", "smaller --tile")
    assert not list(tmp_path.iterdir())


def test_triton_repo_folder_follows_umask(files, tmp_path, capsys, umask022):
    repo = tmp_path / "repo"
    assert main(["triton-repo", "--checkpoint", str(files["x4.pt"]), "--out", str(repo), "--tile", "16"]) == 0
    assert _mode(repo) == 0o755 and _mode(repo / "compsrt_tile") == 0o755
    assert _mode(repo / "compsrt_repo.json") == 0o644
