"""Parity of the exported graph (ONNX Runtime, CPU, matmul variant) with the PyTorch model it came from.

Both sides see exactly the same tiles: the runtime's tiler (:class:`~compsrt.runtime.upscaler.TiledUpscaler`,
no overlap) cuts the LR image into the graph's tiles, the ONNX Runtime runner and the torch runner upscale
them, the tiler stitches and crops. Scores follow the benchmark protocol (Y channel, border = scale, uint8
output); value agreement (:func:`compsrt.runtime.compare.compare`) is measured on the float outputs clamped
to [0, 1].

Why free-running agreement is not exact on deep low-bit models: both sides compute every pre-quantization
value in FP32 with different kernels (convs, LayerNorm, GEMM summation order, softmax exp, GELU erf), so
they differ by ~1e-6. Where such a value lies within ~1e-6 of a rounding boundary (k + 0.5 in code units)
the two sides pick neighbouring codes; at 2-4 bits one code is a large step, and the difference spreads
through the following blocks. The PyTorch simulation does the same to itself when only the batch
composition changes (different GEMM blocking). So :func:`run_parity` also reports

* ``floor``: PyTorch batched (as the comparison) vs PyTorch one tile at a time - the float noise floor of
  the simulation itself, against which the ONNX numbers are to be read;
* ``site_check`` (:func:`site_parity`): one tile, with the graph's QuantizeLinear inputs/outputs exposed,
  the PyTorch model *forced* to use ONNX Runtime's codes at every site. Then all differences that remain
  are float noise, per site: a code of ONNX Runtime that PyTorch's own rounding of its value does not
  give must lie at a rounding boundary (``off_boundary`` counts those that do not: 0 for a correct export),
  and the forced outputs must agree to float precision. Any systematic mismatch (formula, axis, shift,
  scale, mask, bias, clip) shows up here at the first site where it occurs.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import CompsrtError
from ..sites import site_quantizers
from .backends import OrtBackend, TorchBackend, session_from_onnx
from .compare import compare
from .upscaler import TiledUpscaler

BOUNDARY_TOL = 1e-4  # code units: a flip further than this from k + 0.5 is not float noise


@torch.no_grad()
def site_parity(model: torch.nn.Module, proto, x: np.ndarray, threads: int | None = None,
                boundary_tol: float = BOUNDARY_TOL) -> dict:
    """Site-by-site comparison of the deploy simulation with the exported graph on one input ``x`` (N, 3, h, w).

    ``free``: both run on their own; codes compared at every site (the first site that differs, and how many
    codes differ there). ``forced``: PyTorch uses ONNX Runtime's codes at every site; a code that PyTorch's own
    rounding would not give must lie within ``boundary_tol`` code units of a rounding boundary, else it counts
    as ``off_boundary`` (a systematic mismatch: 0 for a correct export).
    """
    import onnx

    quants = site_quantizers(model)
    if not quants:
        raise CompsrtError("site_parity needs a deploy-mode compressed model")
    g = onnx.ModelProto()
    g.CopyFrom(proto)
    qnodes = {n.output[0]: n for n in g.graph.node if n.op_type == "QuantizeLinear"}
    where = {}
    for name in quants:
        hits = [k for k in (f"{name}/act/q", f"{name}/q") if k in qnodes]
        if len(hits) != 1:
            raise CompsrtError(f"site {name}: no single QuantizeLinear in the graph")
        node = qnodes[hits[0]]
        where[name] = (node.input[0], node.output[0])
        g.graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
        g.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.INT8, None))
    sess = parity_session(g.SerializeToString(), threads)
    res = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})))
    y_onnx = res.pop(sess.get_outputs()[0].name)

    names = {id(fq): name for name, fq in quants.items()}
    rows: dict[str, dict] = {}
    forcing = [False]

    def hook(mod, inp, out):
        name = names.get(id(mod))
        if name is None:
            return None
        t = inp[0].detach().float()
        s, sh = mod.step().detach(), mod.shift().detach()
        v = (t - sh) / s
        own = torch.clamp(torch.round(v), mod.qmin, mod.qmax)
        theirs = torch.from_numpy(res[where[name][1]].astype(np.float32))
        flips = own != theirs
        r = rows.setdefault(name, {"site": name, "codes": int(own.numel())})
        if not forcing[0]:
            r["free_flips"] = int(flips.sum())
            return None
        vc = v.clamp(mod.qmin - 0.5, mod.qmax + 0.5)[flips]
        mid = 0.5 * (own[flips] + theirs[flips])
        dist = (vc - mid).abs()
        bad = ((own[flips] - theirs[flips]).abs() != 1) | (dist > boundary_tol)
        lo, hi = float(mod.qmin * s), float(mod.qmax * s)
        pre = torch.clamp(t - sh, lo, hi).numpy()
        # an INT8 site has no Clip in the graph (QuantizeLinear saturates): compare within the same range
        theirs_pre = np.clip(res[where[name][0]], np.float32(lo), np.float32(hi))
        r.update(forced_flips=int(flips.sum()), off_boundary=int(bad.sum()),
                 max_boundary_dist=float(dist.max()) if dist.numel() else 0.0,
                 max_prequant_abs=float(np.abs(pre - theirs_pre).max()))
        return theirs * s  # the simulation's dequantization (codes * s) of ONNX Runtime's codes

    handles = [fq.register_forward_hook(hook) for fq in quants.values()]
    try:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        y_free = model(xt).float().numpy()
        forcing[0] = True
        y_forced = model(xt).float().numpy()
    finally:
        for h in handles:
            h.remove()
    order = [rows[n] for n in quants if n in rows]
    first = next((r for r in order if r["free_flips"]), None)
    first_bad = next((r for r in order if r["off_boundary"]), None)
    free = compare(y_free, y_onnx)
    forced = compare(y_forced, y_onnx)
    return {
        "sites": len(order), "codes": sum(r["codes"] for r in order),
        "free": {"first_site": first and first["site"], "first_site_flips": first and first["free_flips"],
                 "sites_with_flips": sum(1 for r in order if r["free_flips"]),
                 "flips": sum(r["free_flips"] for r in order), "out_max_abs": free["max_abs"],
                 "out_frac_off": free["n_off"] / free["n"]},
        "forced": {"flips": sum(r["forced_flips"] for r in order), "off_boundary": sum(r["off_boundary"] for r in order),
                   "first_off_boundary_site": first_bad and first_bad["site"],
                   "max_boundary_dist": max(r["max_boundary_dist"] for r in order),
                   "max_prequant_abs": max(r["max_prequant_abs"] for r in order),
                   "out_max_abs": forced["max_abs"], "out_frac_off": forced["n_off"] / forced["n"]},
        "per_site": order,
    }


def parity_session(model: "str | os.PathLike | bytes", threads: int | None = None):
    """ONNX Runtime with basic graph optimisations only: the graph as written (see
    :func:`~compsrt.runtime.backends.onnxrt.session_from_onnx`), which is what parity tests."""
    return session_from_onnx(model, threads=threads, optimization="basic")


def _tiled(backend, batch: int) -> TiledUpscaler:
    """The runtime's tiler on the backend's fixed tile, without overlap (every output pixel from one tile)."""
    return TiledUpscaler(backend, overlap=0, margin=0, batch=batch)


def check_same_checkpoint(checkpoint: str | os.PathLike, onnx_path: str | os.PathLike) -> None:
    """Refuse an ONNX model exported from another checkpoint (its sidecar, else its metadata, records the sha256
    of the checkpoint it came from); a graph that records none is compared as it is."""
    import onnx

    from ..artifacts import read_sidecar
    from ..files import sha256_file

    recorded = read_sidecar(onnx_path).get("checkpoint_sha256")
    if not recorded:
        meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        recorded = meta.get("compsrt.checkpoint_sha256")
    if not recorded or recorded == "none":
        return
    actual = sha256_file(checkpoint)
    if recorded != actual:
        raise CompsrtError(f"{onnx_path} was exported from another checkpoint (sha256 {recorded[:12]}…), not from "
                           f"{checkpoint} (sha256 {actual[:12]}…); pass the checkpoint it was exported from, or omit "
                           f"--onnx to export {checkpoint} now")


def parity_verdict(r: dict) -> dict:
    """PASS / FAIL (or undecided, ``pass`` None) against the tolerance ``r["tol"]``, and what it means.

    Low-bit graphs rarely agree value for value when run free (see the module docstring), so for them the
    site check decides: with ONNX Runtime's codes forced, the outputs must agree within the tolerance and no
    differing code may lie off a rounding boundary.
    """
    tol, pct = r["tol"], 100 * r["frac_off"]
    if r["n_off"] == 0:
        return {"pass": True, "reason": f"every output value is within {tol:g} of the PyTorch simulation"}
    c = r.get("site_check")
    if c:
        fo = c["forced"]
        if fo["off_boundary"] == 0 and fo["out_max_abs"] <= tol:
            floor = f", noise floor {100 * r['floor']['frac_off']:.1f} %" if r.get("floor") else ""
            return {"pass": True, "reason": (
                f"the graph computes the simulation's values: forced to ONNX Runtime's codes the outputs agree within "
                f"{fo['out_max_abs']:.1e} (<= {tol:g}) and all {fo['flips']} codes rounded differently lie at a "
                f"rounding boundary; the {pct:.1f} % of values off when run free{floor} are float noise amplified "
                "by low-bit rounding, not an export error")}
        where = f", first at {fo['first_off_boundary_site']}" if fo["first_off_boundary_site"] else ""
        return {"pass": False, "reason": (
            f"{fo['off_boundary']} codes off a rounding boundary{where}, forced outputs differ by up to "
            f"{fo['out_max_abs']:.1e} (tolerance {tol:g}): the graph does not compute what the simulation computes "
            "(an export error)")}
    if r["mode"] == "fp":
        return {"pass": False, "reason": f"{pct:.3f} % of the values of an FP graph differ by more than {tol:g} "
                                         "(an export error)"}
    return {"pass": None, "reason": f"{pct:.1f} % of values differ by more than {tol:g} and the site check was "
                                    "skipped: rerun without --no-site-check to tell float noise from an export error"}


def run_parity(checkpoint: str | os.PathLike, tile: tuple[int, int], dataset: str = "Set5",
               data_root: str | os.PathLike | None = None, onnx_path: str | os.PathLike | None = None,
               tol: float = 1e-3, floor: bool = True, site_check: bool = True, threads: int | None = None) -> dict:
    """Score ``dataset`` with the deploy-mode PyTorch model and with ONNX Runtime on the same tiles.

    ``floor``: also run PyTorch one tile at a time (the comparison batches 8) - the simulation's own float
    noise floor. ``site_check``: :func:`site_parity` on the first tile of the first image (quantized models).
    ``threads``: ONNX Runtime's intra-op threads (default: its own choice, all cores).
    """
    from ..calibration.checkpoint import load_model
    from ..evaluation.benchmark import benchmark_pairs
    from ..evaluation.metrics import score_y, to_uint8
    from ..export.exporter import ExportOptions, export_model
    from ..images import load_image
    from ..paths import benchmarks_dir
    from ..sites import is_quantized
    from .tiling import extract_tiles, pad_image

    model, meta = load_model(checkpoint)
    scale = int(model.scale)
    root = Path(data_root) if data_root else benchmarks_dir()
    tmpdir = None
    t0 = time.perf_counter()
    if onnx_path is not None:
        check_same_checkpoint(checkpoint, onnx_path)
    if onnx_path is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="compsrt-parity-")
        onnx_path = Path(tmpdir.name) / "model.onnx"
        export_model(model, onnx_path, ExportOptions(tile=tile, batch=None, hadamard="matmul"), meta)
    export_s = time.perf_counter() - t0
    try:
        ort_b = OrtBackend(parity_session(onnx_path, threads))
        torch_b = TorchBackend(model)
        torch_b.tile = ort_b.tile  # the torch runner takes the graph's tiles too
        ort_up, torch_up, torch_1 = _tiled(ort_b, 8), _tiled(torch_b, 8), _tiled(torch_b, 1)
        rows, n_off, n_all, max_abs = [], 0, 0, 0.0
        f_off, f_max = 0, 0.0
        t_torch = t_ort = 0.0
        first_tile = None
        for name, lr_path, hr_path in benchmark_pairs(root, dataset, scale):
            lr, hr = load_image(lr_path).rgb, load_image(hr_path).rgb
            t = time.perf_counter()
            y_t = torch_up.upscale(lr, keep_float=True).rgb_float
            t_torch += time.perf_counter() - t
            t = time.perf_counter()
            y_o = ort_up.upscale(lr, keep_float=True).rgb_float
            t_ort += time.perf_counter() - t
            if first_tile is None:
                grid = torch_up._grid(*lr.shape[:2])
                first_tile = extract_tiles(pad_image(lr, grid.padded_h, grid.padded_w), grid, grid.origins()[:1])
            c = compare(y_t, y_o, tol)
            p_t, _ = score_y(to_uint8(y_t), hr, border=scale)
            p_o, _ = score_y(to_uint8(y_o), hr, border=scale)
            row = {"image": name, "psnr_torch": p_t, "psnr_onnx": p_o, "max_abs": c["max_abs"],
                   "frac_off": c["frac_off"]}
            if floor:
                y_1 = torch_1.upscale(lr, keep_float=True).rgb_float
                c1 = compare(y_t, y_1, tol)
                row.update(psnr_torch_b1=score_y(to_uint8(y_1), hr, border=scale)[0], floor_max_abs=c1["max_abs"],
                           floor_frac_off=c1["frac_off"])
                f_off, f_max = f_off + c1["n_off"], max(f_max, c1["max_abs"])
            rows.append(row)
            n_off += c["n_off"]
            n_all += c["n"]
            max_abs = max(max_abs, c["max_abs"])
        checked = None
        if site_check and first_tile is not None and is_quantized(model):
            import onnx

            t = time.perf_counter()
            checked = site_parity(model, onnx.load(str(onnx_path)), first_tile, threads)
            checked["seconds"] = time.perf_counter() - t
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    psnr_t = float(np.mean([r["psnr_torch"] for r in rows]))
    psnr_o = float(np.mean([r["psnr_onnx"] for r in rows]))
    fl = None
    if floor:
        psnr_1 = float(np.mean([r["psnr_torch_b1"] for r in rows]))
        fl = {"what": "PyTorch batch 8 vs PyTorch batch 1 (same tiles)", "psnr_torch_b1": psnr_1,
              "psnr_diff": psnr_1 - psnr_t, "frac_off": f_off / n_all, "n_off": f_off, "max_abs": f_max}
    result = {
        "checkpoint": str(checkpoint), "dataset": dataset, "scale": scale, "tile": list(tile),
        "mode": meta.get("mode", "fp"), "bits": meta.get("bits", 32), "precision": meta.get("precision"),
        "psnr_torch": psnr_t, "psnr_onnx": psnr_o, "psnr_diff": psnr_o - psnr_t,
        "frac_off": n_off / n_all, "n_off": n_off, "n_values": n_all, "max_abs": max_abs, "tol": tol,
        "seconds": {"export": export_s, "torch": t_torch, "onnxruntime": t_ort}, "images": rows,
        "floor": fl, "site_check": checked,
    }
    result["verdict"] = parity_verdict(result)
    return result


def format_parity(r: dict) -> str:
    lines = [f"{r['dataset']} x{r['scale']} {r['mode']} {r.get('precision') or str(r['bits']) + '-bit'}, tile {r['tile'][1]}x{r['tile'][0]}"]
    lines += [f"  {x['image']:<10} torch {x['psnr_torch']:.4f}  onnx {x['psnr_onnx']:.4f}  max|d| {x['max_abs']:.2e}  "
              f"off {100 * x['frac_off']:.4f} %" for x in r["images"]]
    lines.append(f"  mean PSNR torch {r['psnr_torch']:.4f} dB, onnxruntime {r['psnr_onnx']:.4f} dB "
                 f"(diff {r['psnr_diff']:+.4f}); {r['n_off']}/{r['n_values']} values "
                 f"({100 * r['frac_off']:.4f} %) off by > {r['tol']:g}; max |diff| {r['max_abs']:.3e}")
    if r.get("floor"):
        f = r["floor"]
        lines.append(f"  noise floor ({f['what']}): PSNR diff {f['psnr_diff']:+.4f} dB; {100 * f['frac_off']:.4f} % "
                     f"off by > {r['tol']:g}; max |diff| {f['max_abs']:.3e}")
    if r.get("site_check"):
        c = r["site_check"]
        fr, fo = c["free"], c["forced"]
        lines.append(f"  site check (first tile, {c['sites']} sites, {c['codes']} codes): free-running first differing site "
                     f"{fr['first_site']} ({fr['first_site_flips']} codes), {fr['flips']} codes differ in all")
        lines.append(f"    forced to ONNX Runtime's codes: {fo['flips']} codes where PyTorch would round otherwise, "
                     f"{fo['off_boundary']} of them off a rounding boundary (max distance {fo['max_boundary_dist']:.1e} "
                     f"code units); output max |diff| {fo['out_max_abs']:.2e}")
    s = r["seconds"]
    lines.append(f"  seconds: export {s['export']:.1f}, torch {s['torch']:.1f}, onnxruntime {s['onnxruntime']:.1f}")
    v = r["verdict"]
    word = {True: "PASS", False: "FAIL", None: "UNDECIDED"}[v["pass"]]
    lines.append(f"verdict: {word} (tolerance {r['tol']:g}): {v['reason']}")
    return "\n".join(lines)
