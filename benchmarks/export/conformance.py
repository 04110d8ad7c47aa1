"""Every ONNX that ``compsrt export`` can write, loaded in the tools users load it with.

The variants come from ``compsrt export``'s own parser (:func:`variants`): for each quantized checkpoint (W8A8,
W4A8, W4A4) the standard-op Hadamard (``--hadamard matmul``) with every ``--weight-storage`` x ``--activations``
choice and every other choice of every option that has choices (``--int4-block``, ``--precision``, ...), one at a
time; the plugin Hadamards (``plugin``, ``fused-quant``) for each checkpoint, and for W4A4 with each other choice
one at a time; a dynamic batch, an explicit ``--opset 21``, and the FP model. A choice added to the parser is
covered without editing this file. Combinations the command refuses (INT4 storage of 8-bit weights, ``fused-quant``
without activation quantizers) are checked to be refused (:func:`expected_refusal`).

Tools, per artifact:

* standard-op graphs: ``onnx.checker.check_model(path, full_check=True)``; ``onnxruntime.InferenceSession(path)``
  with no options (ONNX Runtime's defaults: ``ORT_ENABLE_ALL``); ``polygraphy run PATH --onnxrt`` (its CLI entry
  point, on the same input); both outputs against compsrt's PyTorch simulation of the checkpoint.
* plugin graphs: ``onnx.checker.check_model(path)`` (no full check: the plugin op has no ONNX schema),
  ``polygraphy inspect model PATH``, and the TensorRT-RTX parse + build of ``compsrt export-check``
  (``compsrt.runtime.engine.parse_and_build`` with the Python plugin; all builds in one child process).
* bf16-internal graphs (``--internal-precision bf16``): as the plugin graphs, with the full check. ONNX Runtime's
  CPU provider has no BF16 kernels, so TensorRT's tools are the ones that judge them (:data:`TRT_ONLY`).

An artifact whose bytes equal an earlier one's (``--weight-storage int4`` is ``auto`` for 4-bit weights, ``int8``
is ``auto`` for 8-bit ones) is checked once and its rows say so.

Parity (:func:`parity`): the export-parity threshold, values off by more than 1e-3: none for FP graphs (2e-3 with
FP16 input/output), at most 0.1 % and no value off by 0.05 or more for quantized ones (a code that flips at a
rounding boundary, as ``tests/test_export.py`` allows). FP16-internal graphs are compared with the export's torch
reference of the same casts (``compsrt.export.precision.reference_forward``), within :data:`MAX_REDUCED_INTERNAL`.

    .venv/bin/python -m benchmarks.export.conformance --out-dir benchmarks/export/results/conformance_cpu

writes ``conformance.json`` and ``conformance.md`` (the table) there and prints the table (the artifacts go to a
temporary folder, or ``--work DIR``);
``tests/test_conformance.py`` runs the same functions and prints the table in pytest's terminal summary.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCALE = 2
TILE_QUANTIZED = 16  # the tiny models of the tests (tests/test_export.py)
TILE_FP = 8  # an FP .pth is always the full SwinIR-light: its smallest tile
QUANTIZED = ("W8A8", "W4A8", "W4A4")
FP = "FP"
STANDARD_HADAMARD = "matmul"  # the one Hadamard form in standard ops; the others need the TensorRT plugin
TOL = 1e-3  # export-parity's threshold for a value that is "off"
FRAC_OFF_QUANTIZED, MAX_QUANTIZED = 1e-3, 0.05
TOL_FP16_IO = 2e-3
# FP16 internals: ONNX Runtime's CPU provider runs many FP16 ops through FP32 kernels (it inserts casts), so its output
# lies between the FP16 reference and FP32; at 4 bits a rounding difference flips codes. Bound: under 2.5 8-bit levels.
MAX_REDUCED_INTERNAL = 1e-2
KNOWN_TRT_FAILURES = {  # (option, value) -> why TensorRT-RTX 1.7 cannot build it (docs/export.md, tested there)
    ("--int4-block", "64"): "TensorRT-RTX 1.7: more than one INT4 block per column next to INT8 activations "
                            "(MyelinCheckException; tests/test_export.py reduces it)",
}
TRT_ONLY = {  # (option, value) -> why a standard-op graph is checked like a plugin graph (TensorRT's tools)
    ("--internal-precision", "bf16"): "ONNX Runtime's CPU provider has no BF16 kernels (NOT_IMPLEMENTED): "
                                      "bf16 internals are for TensorRT",
}
TOOLS_STANDARD = ("onnx.checker full_check", "onnxruntime default session", "polygraphy run --onnxrt")
TOOLS_PLUGIN = ("onnx.checker", "polygraphy inspect model", "TensorRT-RTX build (export-check)")


# -- what to export ---------------------------------------------------------------------------------
def export_choices() -> dict[str, tuple[tuple[str, ...], str | None]]:
    """``compsrt export``'s options that have choices: option -> (choices as strings, default as a string)."""
    from compsrt.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for a in sub.choices["export"]._actions:
        if a.choices and a.option_strings:
            out[a.option_strings[0]] = (tuple(str(c) for c in a.choices), None if a.default is None else str(a.default))
    return out


@dataclass(frozen=True)
class Variant:
    checkpoint: str  # FP or a preset name
    options: tuple[tuple[str, str], ...] = ()  # export options besides --checkpoint, --tile, --out

    @property
    def name(self) -> str:
        """E.g. ``W4A4_matmul_internal-fp16``: the option's first word beside its value (``--precision fp16`` and
        ``--internal-precision fp16`` must not share a name, nor an output file)."""
        parts = [v.replace("fused-quant", "fusedquant") if k == "--hadamard" else f"{k.lstrip('-').split('-')[0]}-{v}"
                 for k, v in self.options]
        return "_".join([self.checkpoint, *parts])

    @property
    def opts(self) -> dict[str, str]:
        return dict(self.options)

    @property
    def tile(self) -> int:
        return TILE_FP if self.checkpoint == FP else TILE_QUANTIZED

    def argv(self, checkpoint: Path, out: Path) -> list[str]:
        return ["export", "--checkpoint", str(checkpoint), "--tile", str(self.tile), "--out", str(out),
                *itertools.chain.from_iterable(self.options)]


def variants(choices: dict | None = None) -> list[Variant]:
    """The export variants (see the module docstring), from the parser's choices."""
    choices = export_choices() if choices is None else choices
    hadamards = choices["--hadamard"][0]
    product_axes = ("--weight-storage", "--activations")  # every combination on the standard-op graph
    others = [k for k in choices if k not in ("--hadamard", *product_axes)]
    out: list[Variant] = [Variant(FP)]  # FP16 input/output and the dynamic batch: on the quantized graphs below
    for ckpt in QUANTIZED:
        base = (("--hadamard", STANDARD_HADAMARD),)
        for combo in itertools.product(*(choices[k][0] for k in product_axes)):
            out.append(Variant(ckpt, base + tuple(zip(product_axes, combo))))
        for k in others:
            out += [Variant(ckpt, base + ((k, v),)) for v in choices[k][0] if v != choices[k][1]]
        for h in hadamards:
            if h != STANDARD_HADAMARD:
                out.append(Variant(ckpt, (("--hadamard", h),)))
    for h in hadamards:  # the plugin forms with every other choice, one at a time (W4A4)
        if h != STANDARD_HADAMARD:
            for k in (*product_axes, *others):
                out += [Variant("W4A4", (("--hadamard", h), (k, v))) for v in choices[k][0] if v != choices[k][1]]
    out.append(Variant("W4A4", (("--hadamard", STANDARD_HADAMARD), ("--batch", "dynamic"))))
    out.append(Variant("W8A8", (("--hadamard", STANDARD_HADAMARD), ("--opset", "21"))))  # INT8 storage at opset 21
    return list(dict.fromkeys(out))


def expected_refusal(v: Variant) -> str | None:
    """Why ``compsrt export`` must refuse ``v`` (the test checks that it does, and nothing else), or None."""
    o = v.opts
    int4_requested = o.get("--weight-storage") == "int4" or "--int4-block" in o
    if v.checkpoint == "W8A8" and int4_requested:
        return "INT4 weights need weights of at most 4 bits"
    if o.get("--activations") == "fp" and o.get("--hadamard") == "fused-quant":
        return "--activations fp leaves nothing for fused-quant to fuse"
    if "--int4-block" in o and o.get("--weight-storage") == "int8":
        return "--int4-block contradicts --weight-storage int8"
    return None


def expected_trt_failure(v: Variant) -> str | None:
    return next((why for (k, val), why in KNOWN_TRT_FAILURES.items() if v.opts.get(k) == val), None)


# -- checkpoints and the simulation -------------------------------------------------------------------
def tiny_quantized(preset: str, seed: int = 0):
    """The tests' tiny SwinIR (one RSTB of two Swin blocks), quantized with ``preset``, ranges from one observed
    batch, frozen: a deploy-mode model made in a second, no calibration run."""
    import torch

    from compsrt.calibration.config import QuantConfig
    from compsrt.calibration.qmodel import observe_and_freeze, quantize_model
    from compsrt.models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(seed)
    m = SwinIR(SwinIRConfig(scale=SCALE, depths=(2,), num_heads=(6,))).eval()
    with torch.no_grad():
        for p in m.parameters():  # non-trivial biases and position tables, so that mistakes show
            p.add_(0.02 * torch.randn_like(p))
    quantize_model(m, QuantConfig.from_preset(preset))
    x = torch.rand(2, 3, TILE_QUANTIZED, TILE_QUANTIZED, generator=torch.Generator().manual_seed(1))
    return observe_and_freeze(m, x)


def make_checkpoints(folder: Path) -> dict[str, Path]:
    """FP SwinIR-light x2 weights (random, the official layout) and a tiny checkpoint per quantized preset."""
    import torch

    from compsrt.calibration.checkpoint import save_checkpoint
    from compsrt.calibration.ranges import record_ranges
    from compsrt.models.swinir import SwinIR, SwinIRConfig

    folder.mkdir(parents=True, exist_ok=True)
    out = {FP: folder / "fp_x2.pth"}
    torch.manual_seed(0)
    torch.save({"params": SwinIR(SwinIRConfig(scale=SCALE)).state_dict()}, out[FP])
    x = torch.rand(2, 3, TILE_QUANTIZED, TILE_QUANTIZED, generator=torch.Generator().manual_seed(2))
    for preset in QUANTIZED:
        model = tiny_quantized(preset)
        meta = {"scale": SCALE, "activation_ranges": record_ranges(model, [x])}  # as calibrate records them
        out[preset] = save_checkpoint(model, meta, folder / f"{preset.lower()}.pt")
    return out


def simulation(checkpoint: Path, activations: str, x: np.ndarray, internal: str = "fp32") -> np.ndarray:
    """compsrt's PyTorch model of the checkpoint on ``x`` (FP32): the deploy simulation, or with ``activations``
    "fp" the weight-only model (every activation quantizer bypassed, as the export leaves them out); with a
    reduced ``internal`` precision, the export's own torch reference with the graph's casts."""
    import torch

    from compsrt.calibration.checkpoint import load_model

    model, _ = load_model(checkpoint)
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    with torch.no_grad(), (fp_activations(model) if activations == "fp" else contextlib.nullcontext()):
        if internal == "fp32":
            return model(xt).float().numpy()
        from compsrt.export.precision import reference_forward
        from compsrt.models.precision import InternalPrecision

        return reference_forward(model, xt, InternalPrecision.of(internal)).float().numpy()


@contextlib.contextmanager
def fp_activations(model):
    """Bypass every activation quantizer of a deploy model: a deploy quantizer returns DQ(Q(t - shift)) and the
    shift is folded into the next bias, so the bypass is ``t - shift`` (what ``--activations fp`` exports)."""
    from compsrt.calibration.quant import FakeQuant

    acts = [m.aq if hasattr(m, "aq") else m.fq for m in model.modules() if hasattr(m, "aq") or hasattr(m, "fq")]
    if not acts or not all(isinstance(q, FakeQuant) for q in acts):
        raise ValueError("not a deploy-mode model with activation quantizers")
    for q in acts:
        q.forward = lambda t, q=q: t.float() - q.shift()
    try:
        yield model
    finally:
        for q in acts:
            del q.forward


def parity(y: np.ndarray, ref: np.ndarray, quantized: bool, fp16_io: bool, reduced_internal: bool = False) -> dict:
    """Max |difference|, the fraction of values off by more than TOL, and whether that is within tolerance."""
    d = np.abs(np.asarray(y, np.float32) - ref)
    tol = TOL_FP16_IO if fp16_io else TOL
    frac = float((d > tol).mean())
    ok = (frac <= FRAC_OFF_QUANTIZED and float(d.max()) < MAX_QUANTIZED) if quantized else frac == 0.0
    if reduced_internal:
        ok = float(d.max()) < MAX_REDUCED_INTERNAL
    return {"max_diff": float(d.max()), "frac_off": frac, "parity": bool(ok)}


# -- the tools ----------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [exc.__class__.__name__])[0][:300]


def _row(v: Variant, tool: str, loads: bool, runs: bool | None = None, **extra) -> dict:
    return {"artifact": v.name, "checkpoint": v.checkpoint, "options": " ".join(itertools.chain(*v.options)),
            "tool": tool, "loads": loads, "runs": runs, **extra}


def polygraphy(*args: str) -> tuple[int, str]:
    """Polygraphy's CLI entry point in this process (``polygraphy ARGS``): exit status and its output."""
    from polygraphy.tools import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse errors
            status = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # what the command would die of (traceback, exit 1): its last line is the result
            status = 1
            print(f"Error: {exc.__class__.__name__}: {_first_line(exc)}")
    return int(status or 0), buf.getvalue()


def check_standard(v: Variant, path: Path, ref: np.ndarray, x: np.ndarray, work: Path) -> list[dict]:
    """checker (full), a default ONNX Runtime session, ``polygraphy run --onnxrt``: rows for the table."""
    import onnx
    import onnxruntime as ort

    quantized, fp16 = v.checkpoint != FP, v.opts.get("--precision") == "fp16"
    reduced = v.opts.get("--internal-precision", "fp32") != "fp32"
    feed = x.astype(np.float16) if fp16 else x
    rows = []
    try:
        onnx.checker.check_model(str(path), full_check=True)
        rows.append(_row(v, TOOLS_STANDARD[0], True, None))
    except Exception as exc:  # the checker's own exception types; the message is the result
        rows.append(_row(v, TOOLS_STANDARD[0], False, None, error=_first_line(exc)))
    try:
        sess = ort.InferenceSession(str(path))  # no options: what a user's application gets
    except Exception as exc:  # onnxruntime's own exception types
        rows.append(_row(v, TOOLS_STANDARD[1], False, None, error=_first_line(exc)))
    else:
        try:
            y = sess.run(None, {sess.get_inputs()[0].name: feed})[0]
            rows.append(_row(v, TOOLS_STANDARD[1], True, True, **parity(y, ref, quantized, fp16, reduced),
                             optimization=str(sess.get_session_options().graph_optimization_level).split(".")[-1]))
        except Exception as exc:  # onnxruntime's own exception types
            rows.append(_row(v, TOOLS_STANDARD[1], True, False, error=_first_line(exc)))
    from polygraphy.comparator import RunResults
    from polygraphy.json import save_json

    inputs, outputs = work / f"{v.name}.inputs.json", work / f"{v.name}.outputs.json"
    save_json([{"input": feed}], str(inputs))
    outputs.unlink(missing_ok=True)
    status, log = polygraphy("run", str(path), "--onnxrt", "--load-inputs", str(inputs), "--save-outputs", str(outputs))
    if status == 0 and outputs.is_file():
        with contextlib.redirect_stdout(io.StringIO()):
            y = next(iter(RunResults.load(str(outputs)).values()))[0]["output"]
        rows.append(_row(v, TOOLS_STANDARD[2], True, True, **parity(y, ref, quantized, fp16, reduced)))
    else:  # polygraphy loads and runs in one command: a failure is reported as not loaded, with its message
        err = next((ln.strip() for ln in reversed(log.splitlines()) if "Error" in ln or "FAIL" in ln), f"exit {status}")
        rows.append(_row(v, TOOLS_STANDARD[2], False, False, error=err[:300]))
    return rows


TRT_CHILD = """
import json, sys
from compsrt.runtime.engine import parse_and_build
for path in sys.argv[1:]:
    print("START", path, flush=True)
    r = parse_and_build(path, plugins="python", max_batch=2)
    print("RESULT", json.dumps({"path": path, "parsed": r.parsed, "built": r.built, "plugin_layers": r.plugin_layers,
          "engine_bytes": r.engine_bytes, "errors": (r.parse_errors + r.build_errors)[:3]}), flush=True)
"""


def trt_builds(paths: list[Path], timeout: float = 900.0) -> dict[str, dict]:
    """``compsrt export-check --plugins python`` for each graph (``parse_and_build``), in one child process so that
    TensorRT loads once; a child that dies is restarted after the graph it died on (which is reported)."""
    results: dict[str, dict] = {}
    todo = [str(p) for p in paths]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                       os.environ.get("PYTHONPATH", "")]))
    while todo:
        p = subprocess.run([sys.executable, "-c", TRT_CHILD, *todo], capture_output=True, text=True, timeout=timeout,
                           env=env, check=False)
        started = None
        for line in p.stdout.splitlines():
            if line.startswith("START "):
                started = line[6:]
            elif line.startswith("RESULT "):
                r = json.loads(line[7:])
                results[r["path"]], started = r, None
        todo = [t for t in todo if t not in results]
        if todo:  # the child died: on the graph it had started, or before the first
            died = started or todo[0]
            tail = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
            results[died] = {"path": died, "parsed": False, "built": False, "errors": [f"child died: {tail}"]}
            todo.remove(died)
    return results


def check_plugin(v: Variant, path: Path, trt: dict | None, full_check: bool = False) -> list[dict]:
    """checker (no full check on plugin graphs: the plugin op has no schema), ``polygraphy inspect model``, the
    TensorRT-RTX build: rows for the table."""
    import onnx

    rows = []
    try:
        onnx.checker.check_model(str(path), full_check=full_check)
        rows.append(_row(v, TOOLS_PLUGIN[0], True, None))
    except Exception as exc:  # the checker's own exception types
        rows.append(_row(v, TOOLS_PLUGIN[0], False, None, error=_first_line(exc)))
    status, log = polygraphy("inspect", "model", str(path))
    rows.append(_row(v, TOOLS_PLUGIN[1], status == 0, None, **({} if status == 0 else {"error": log[-300:]})))
    if trt is None:
        rows.append(_row(v, TOOLS_PLUGIN[2], False, None, error="tensorrt_rtx not installed: not run", skipped=True))
    else:
        known = expected_trt_failure(v)
        rows.append(_row(v, TOOLS_PLUGIN[2], bool(trt["parsed"]), bool(trt["built"]),
                         **({"error": "; ".join(trt["errors"])[:300]} if trt["errors"] else {}),
                         **({"known_failure": known} if known else {})))
    return rows


# -- all of it ----------------------------------------------------------------------------------------
@dataclass
class Exported:
    variant: Variant
    path: Path | None
    refused: str | None = None  # the command's output when it refused (exit status in ``rc``)
    rc: int = 0
    sidecar: dict = field(default_factory=dict)
    sha256: str = ""


def export(v: Variant, checkpoints: dict[str, Path], folder: Path) -> Exported:
    """``compsrt export`` for ``v`` through the command's own entry point; a refusal is recorded, not raised."""
    from compsrt.cli import main

    path = folder / f"{v.name}.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = main(v.argv(checkpoints[v.checkpoint], path))
    if rc != 0:
        return Exported(v, None, refused=buf.getvalue().strip() or f"exit {rc}", rc=rc)
    from compsrt.files import sha256_file

    return Exported(v, path, sidecar=json.loads(Path(f"{path}.json").read_text()), sha256=sha256_file(path))


def is_plugin_graph(e: Exported) -> bool:
    return bool(e.sidecar.get("plugin"))


def trt_only(e: Exported) -> str | None:
    """Why ``e`` is checked with TensorRT's tools instead of ONNX Runtime's (plugin nodes, BF16), or None."""
    if is_plugin_graph(e):
        return "TensorRT plugin nodes"
    return next((why for (k, val), why in TRT_ONLY.items() if e.variant.opts.get(k) == val), None)


def reference_input(e: Exported) -> np.ndarray:
    batch = 2 if e.sidecar["batch"] == "dynamic" else int(e.sidecar["batch"])
    t = e.variant.tile
    return np.random.default_rng(5).random((batch, 3, t, t), dtype=np.float32)


def check(e: Exported, checkpoints: dict[str, Path], work: Path, trt: dict[str, dict] | None,
          references: dict | None = None) -> list[dict]:
    """The table's rows for one exported artifact (``references``: a cache of simulation outputs)."""
    v = e.variant
    if trt_only(e):
        return check_plugin(v, e.path, None if trt is None else trt.get(str(e.path)),
                            full_check=not is_plugin_graph(e))
    x = reference_input(e)
    fp16 = v.opts.get("--precision") == "fp16"
    xs = x.astype(np.float16).astype(np.float32) if fp16 else x  # what the graph sees after its input Cast
    key = (v.checkpoint, v.opts.get("--activations", "quantized"), xs.shape, fp16,
           v.opts.get("--internal-precision", "fp32"))
    references = {} if references is None else references
    if key not in references:
        references[key] = simulation(checkpoints[v.checkpoint], key[1], xs, key[4])
    return check_standard(v, e.path, references[key], x, work)


def row_ok(r: dict) -> bool:
    """Whether a row is the expected result: loads, runs (where it runs) within tolerance; a known TensorRT
    failure must still fail (so the table tells when it is fixed)."""
    if r.get("skipped"):
        return True
    if r.get("known_failure"):
        return r["loads"] and r["runs"] is False
    return bool(r["loads"]) and r["runs"] is not False and r.get("parity", True)


def refusal_ok(e: Exported) -> bool:
    """A refusal is expected when :func:`expected_refusal` names it, as a one-line error with exit status 2."""
    return bool(expected_refusal(e.variant)) and e.rc == 2 and len(e.refused.splitlines()) == 1


def _yn(value) -> str:
    return "-" if value is None else "yes" if value else "**no**"


def format_table(rows: list[dict], refused: list[Exported] = ()) -> str:
    """Markdown: artifact x tool -> loads, runs, max |difference| against compsrt's simulation, note."""
    lines = ["| artifact | export options | tool | loads | runs | max abs diff | values off > tol | result | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = f"{r['max_diff']:.2e}" if r.get("max_diff") is not None else "-"
        frac = f"{100 * r['frac_off']:.3f} %" if r.get("frac_off") is not None else "-"
        note = r.get("known_failure") or r.get("error") or (f"ORT {r['optimization']}" if r.get("optimization") else "")
        if r.get("same_as"):
            note = f"same bytes as {r['same_as']}" + (f"; {note}" if note else "")
        result = "ok" if row_ok(r) else "FAIL"
        if r.get("known_failure"):
            result = "known failure" if row_ok(r) else "FIXED? (was a known failure)"
        lines.append(f"| {r['artifact']} | {r['options'] or '(defaults)'} | {r['tool']} | {_yn(r['loads'])} | "
                     f"{_yn(r['runs'])} | {diff} | {frac} | {result} | {note.replace('|', '/')} |")
    for e in refused:
        lines.append(f"| {e.variant.name} | {' '.join(itertools.chain(*e.variant.options))} | compsrt export | "
                     f"refused (exit {e.rc}) | - | - | - | {'ok' if refusal_ok(e) else 'FAIL'} | "
                     f"{e.refused.splitlines()[-1].replace('|', '/')} |")
    return "\n".join(lines)


def environment() -> dict:
    import onnx
    import onnxruntime
    import polygraphy
    import torch

    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "polygraphy": polygraphy.__version__,
           "torch": torch.__version__}
    try:
        import tensorrt_rtx

        env["tensorrt_rtx"] = tensorrt_rtx.__version__
    except ImportError:
        env["tensorrt_rtx"] = None
    return env


@dataclass
class Results:
    exported: list[Exported]
    rows: list[dict]
    seconds: float

    @property
    def refused(self) -> list[Exported]:
        return [e for e in self.exported if e.path is None]

    @property
    def all_ok(self) -> bool:
        return all(map(row_ok, self.rows)) and all(map(refusal_ok, self.refused))

    def rows_of(self, v: Variant) -> list[dict]:
        return [r for r in self.rows if r["artifact"] == v.name]

    def table(self) -> str:
        return format_table(self.rows, self.refused)

    def to_json(self) -> dict:
        return {"environment": environment(), "seconds": self.seconds, "all_ok": self.all_ok, "rows": self.rows,
                "refused": [{"artifact": e.variant.name, "options": " ".join(itertools.chain(*e.variant.options)),
                             "exit": e.rc, "error": e.refused, "expected": expected_refusal(e.variant)}
                            for e in self.refused]}


def run_all(work: Path, trt: bool = True, checkpoints: dict[str, Path] | None = None) -> Results:
    """Export every variant into ``work`` and check each artifact in its tools. An artifact whose bytes equal an
    earlier one's (``--weight-storage int4`` is ``auto`` for 4-bit weights) gets that one's rows, so noted."""
    import warnings

    start = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoints or make_checkpoints(work / "checkpoints")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = [export(v, checkpoints, work) for v in variants()]
    first: dict[str, Exported] = {}
    for e in exported:
        if e.path is not None:
            first.setdefault(e.sha256, e)
    distinct = list(first.values())
    if trt:
        try:
            import tensorrt_rtx  # noqa: F401
        except ImportError:
            trt = False
    references: dict = {}
    with ThreadPoolExecutor(1) as pool:  # the TensorRT child builds while this process checks the standard graphs
        builds = pool.submit(trt_builds, [e.path for e in distinct if trt_only(e)]) if trt else None
        by_name = {e.variant.name: check(e, checkpoints, work, None, references)
                   for e in distinct if not trt_only(e)}
        builds = builds.result() if builds is not None else None
    by_name |= {e.variant.name: check(e, checkpoints, work, builds) for e in distinct if trt_only(e)}
    rows = []
    for e in exported:
        if e.path is None:
            continue
        same = first[e.sha256]
        for r in by_name[same.variant.name]:
            rows.append(r if same is e else r | _row(e.variant, r["tool"], r["loads"], r["runs"]) | {
                "same_as": same.variant.name})
    return Results(exported, rows, round(time.perf_counter() - start, 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, required=True, help="writes conformance.json and conformance.md here")
    ap.add_argument("--work", type=Path, help="keep the checkpoints and artifacts here (default: a temporary folder)")
    ap.add_argument("--no-trt", action="store_true", help="skip the TensorRT-RTX builds")
    args = ap.parse_args(argv)
    import tempfile

    from compsrt.files import atomic_write_text

    with tempfile.TemporaryDirectory(prefix="compsrt-conformance-") as tmp:
        r = run_all(args.work or Path(tmp), trt=not args.no_trt)
    table = r.table()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out_dir / "conformance.json", json.dumps(r.to_json(), indent=1) + "\n")
    atomic_write_text(args.out_dir / "conformance.md", table + "\n")
    print(table)
    print(f"\n{len(r.rows)} rows, {len(r.refused)} refusals, {r.seconds} s; all as expected: {r.all_ok}")
    return 0 if r.all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
