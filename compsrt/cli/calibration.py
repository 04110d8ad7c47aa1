"""``compsrt calibrate`` and ``compsrt pack``: thin argparse layers over the calibration library.

The main CLI calls :func:`register` with its subparsers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..calibration.config import PRESETS
from ..errors import CompsrtError
from .args import DEVICE_HELP, add_json_flag, existing, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="compress SwinIR-light with CompSRT (DOBI + DQC distillation)")
    p.add_argument("--scale", type=int, required=True, choices=(2, 3, 4), help="upscaling factor of the model")
    p.add_argument("--bits", type=int, default=None,
                   help="weight and activation bit-width: 2, 3, 4 or 8 (8: deploy only) (default: none; give it, or "
                        "--wbits and --abits, or --preset)")
    p.add_argument("--wbits", type=int, default=None, help="weight bit-width (deploy mode; default --bits)")
    p.add_argument("--abits", type=int, default=None,
                   help="activation bit-width (deploy mode; default --bits); TensorRT runs every activation in INT8")
    p.add_argument("--preset", default=None, choices=tuple(PRESETS),
                   help="named bit-widths for the engine (deploy mode): " + "; ".join(f"{k}: {v[3]}" for k, v in PRESETS.items())
                   + " (default: none)")
    p.add_argument("--site-bits", default=None, metavar="SPEC",
                   help="per-site overrides (deploy mode), after the preset's: PATTERN[:w|:a]=B,... or a JSON file "
                        "{\"PATTERN[:w|:a]\": B}; PATTERN is an fnmatch pattern over site names or their tail, e.g. "
                        "attn.quant_attn=8,mlp.fc2:a=8 (default: none)")
    p.add_argument("--mode", default="deploy", choices=("deploy", "paper"),
                   help="deploy: the symmetric form TensorRT runs; paper: the authors' simulation (default %(default)s)")
    p.add_argument("--prune", default=None,
                   help="unstructured ratio (e.g. 0.4) or 2:4 (deploy only) (default: no pruning)")
    p.add_argument("--clamp-codes", action="store_true",
                   help="paper mode: clamp codes to b bits (the authors' codes are unclamped and can outgrow them)")
    p.add_argument("--iters", type=int, default=None,
                   help="DQC distillation iterations (default: 400 on a GPU, where 227-400 came within about 0.03 dB of "
                        "the authors' 4,000 on every x4 deploy configuration measured; 100 on a CPU, where the "
                        "distillation loss is flat from 40 to 100: docs/calibration.md)")
    p.add_argument("--batch", type=positive_int, default=16, help="training patches per iteration (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed of patch sampling and init (default %(default)s)")
    p.add_argument("--patch", type=positive_int, default=None,
                   help="LR patch size of a DQC batch (default: 64 on a GPU, 32 on a CPU)")
    p.add_argument("--dobi-batch", type=positive_int, default=None,
                   help="patches DOBI observes (default: 32 on a GPU, 4 on a CPU)")
    p.add_argument("--weights", type=existing("weights file", "pass an existing .pth file"), default=None,
                   help="FP weights (.pth) (default: the data folder's stand-in)")
    p.add_argument("--data", type=existing("data root", directory_ok=True), default=None, metavar="DIR",
                   help="data root holding train/ and calib/ (default: $COMPSRT_DATA, else ../shared/data)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--lr-mode", default="auto", choices=("auto", "absolute", "step"),
                   help="DQC update size: absolute (the authors' lr), step (lr relative to each quantizer's DOBI step); "
                        "auto = step in deploy mode, absolute in paper mode (default %(default)s)")
    p.add_argument("--step-floor", type=float, default=None,
                   help="step mode: keep each quantizer's step >= this fraction of its DOBI step (default 0.25; 0 = off)")
    p.add_argument("--no-cuda-graph", action="store_true", help="run the training step eagerly on CUDA")
    p.add_argument("--fast-blocks", default="auto", choices=("auto", "on", "off"),
                   help="CUDA: Swin blocks through torch.compile, the student's under bf16 autocast (quantizers stay FP32); "
                        "auto = on for runs of >= 1,000 iterations (compiling takes about a minute) (default %(default)s)")
    p.add_argument("--pack", default=None, metavar="CSRT", help="also write the packed storage file (default: not written)")
    p.add_argument("--out", required=True, help="output checkpoint (.pt)")
    p.set_defaults(func=_calibrate)

    r = subparsers.add_parser("ranges", help="record per-tensor activation ranges on training patches (for the "
                                           "FP16 overflow guard of `compsrt export --internal-precision fp16`)")
    r.add_argument("--weights", type=existing("model file", "pass SwinIR-light .pth weights or a compressed checkpoint"),
                   required=True, help="FP weights (.pth) or a compressed checkpoint")
    r.add_argument("--patches", type=positive_int, default=32, help="training patches (default %(default)s)")
    r.add_argument("--patch", type=positive_int, default=64, help="LR patch side (default %(default)s)")
    r.add_argument("--seed", type=int, default=0, help="random seed of patch sampling (default %(default)s)")
    r.add_argument("--data", type=existing("data root", directory_ok=True), default=None, metavar="DIR",
                   help="data root holding train/ and calib/ (default: $COMPSRT_DATA, else ../shared/data)")
    r.add_argument("--device", default="auto", help=DEVICE_HELP)
    r.add_argument("--out", type=Path, required=True, help="output JSON")
    r.set_defaults(func=_ranges)

    k = subparsers.add_parser("pack", help="pack a compressed checkpoint; prints the measured bits per parameter")
    k.add_argument("checkpoint", help="compressed checkpoint (.pt) from `compsrt calibrate`")
    k.add_argument("--out", required=True, help="packed file (.csrt)")
    add_json_flag(k, "the size statistics")
    k.set_defaults(func=_pack)


def _calibrate(args) -> int:
    from ..calibration.checkpoint import pack_file
    from ..calibration.distill import STEP_FLOOR, DistillSettings
    from ..calibration.pipeline import compress

    cfg = quant_config(args)
    if args.step_floor is not None and not 0 <= args.step_floor < 1:
        raise CompsrtError(f"--step-floor must be in [0, 1), got {args.step_floor}")
    fast = {"auto": None, "on": True, "off": False}[args.fast_blocks]
    st = DistillSettings(iters=args.iters, batch=args.batch, seed=args.seed,
                         patch=args.patch, dobi_batch=args.dobi_batch, cuda_graph=not args.no_cuda_graph,
                         lr_mode=args.lr_mode, step_floor=STEP_FLOOR if args.step_floor is None else args.step_floor,
                         compile=fast, bf16=fast)
    meta = compress(args.scale, cfg, args.out, st, weights=args.weights, data=args.data, device=args.device,
                    on_estimate=lambda *a: _announce(estimate_line(*a, explicit_iters=args.iters is not None)))
    log = meta["log"]
    print(f"settings: {log['device']}, batch {st.batch} of {log['patch']}x{log['patch']} LR patches, DOBI on "
          f"{log['dobi_batch']} patches (device defaults unless --patch / --dobi-batch); data {meta['seconds_data']:.1f} s, "
          f"DOBI {log['seconds_dobi']:.1f} s, DQC {log['seconds_train']:.1f} s; Swin blocks "
          f"{'compiled' if log.get('compiled') else 'eager'}{', bf16' if log.get('bf16') else ''}"
          f"{' (compile failed: ' + log['compile_error'] + ')' if log.get('compile_error') else ''}")
    print(f"wrote {args.out}: {cfg.tag} x{args.scale}, {log['iters_done']} iterations, "
          f"{log['seconds_total']:.1f} s (DOBI {log['seconds_dobi']:.1f} s)")
    b, wb, ab = cfg.bits, log["weight_code_bits"], log["activation_code_bits"]
    if cfg.mode == "paper" and max(wb, ab) > b:
        print(f"warning: codes need up to {wb} bits (weights) and {ab} bits (activations), not {b}: paper mode does "
              f"not clamp codes and DQC shrank quantizer steps ({log['collapsed_steps']} collapsed to ~0), so this "
              f"is not a {b}-bit model; deploy mode, or --clamp-codes in paper mode, keeps codes to {b} bits "
              "(docs/calibration.md, 'Paper mode')")
    if args.pack:
        print(pack_summary(args.pack, pack_file(args.out, args.pack)))
    return 0


NOTICE_S = 180  # a run expected to take longer than this gets one line with its estimate and how to shorten it


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def estimate_line(seconds_per_iter: float, iters_left: int, iters: int, device: str,
                  explicit_iters: bool) -> str | None:
    """The one line before a long calibration: how long it will take and how to shorten it; None when short."""
    left = seconds_per_iter * iters_left
    if left <= NOTICE_S:
        return None
    fits = max(1, int(NOTICE_S / seconds_per_iter))  # iterations that fit in the notice threshold
    which = "" if explicit_iters else f" (the {'GPU' if device == 'cuda' else 'CPU'} default)"
    hint = f"--iters {fits} takes about {_minutes(fits * seconds_per_iter)}"
    if device != "cuda":
        hint += "; on a GPU, --device cuda"
    return (f"calibrate: about {_minutes(left)} left for {iters} iterations{which} at {seconds_per_iter:.1f} s each "
            f"on {device}; to shorten it: {hint}")


def _announce(line: str | None) -> None:
    if line:
        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stderr)


def quant_config(args):
    """The QuantConfig of ``--bits`` / ``--wbits`` / ``--abits`` / ``--preset`` / ``--site-bits``."""
    from ..calibration.config import QuantConfig, parse_site_bits

    overrides = parse_site_bits(args.site_bits)
    if args.preset:
        if any(v is not None for v in (args.bits, args.wbits, args.abits)):
            raise CompsrtError(f"--preset {args.preset} sets the bit-widths; drop --bits / --wbits / --abits "
                               "(per-site changes: --site-bits)")
        return QuantConfig.from_preset(args.preset, args.mode, args.prune, overrides)
    bits = args.bits if args.bits is not None else args.wbits
    if bits is None or (args.bits is None and args.abits is None):
        raise CompsrtError("give the bit-widths: --bits B (weights and activations), or --wbits B --abits B, or --preset NAME")
    return QuantConfig(bits=bits, mode=args.mode, prune=args.prune, clamp_codes=args.clamp_codes, wbits=args.wbits,
                       abits=args.abits, overrides=overrides)


def _ranges(args) -> int:
    from ..calibration.ranges import ranges_for_file
    from ..files import atomic_write_text
    from ..models.precision import FP16_MAX

    res = ranges_for_file(args.weights, args.patches, args.patch, seed=args.seed, device=args.device, data=args.data)
    atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")
    for g, rec in res["groups"].items():
        print(f"{g:8s} max |x| {rec['max_abs']:10,.1f} ({rec['max_abs'] / FP16_MAX:.2%} of FP16's 65,504) at "
              f"{rec['tensor']}; residual stream {rec['residual_max_abs']:,.1f}")
    print(f"wrote {args.out}: {len(res['tensors'])} tensors, {res['patches']} patches of {args.patch}x{args.patch}")
    return 0


def _pack(args) -> int:
    if not Path(args.checkpoint).is_file():  # before torch is imported: a missing file is refused at once
        raise CompsrtError(f"compressed checkpoint {args.checkpoint} does not exist; create one with `compsrt calibrate`")
    from ..calibration.checkpoint import pack_file

    stats = pack_file(args.checkpoint, args.out)
    print(json.dumps(stats, indent=1) if args.json else pack_summary(args.out, stats))
    return 0


def pack_summary(path, s: dict) -> str:
    """What ``compsrt pack`` prints: bits per quantized weight, bits per parameter overall, and what stays FP."""
    q, r, n = s["quantized_weights"], s["quantizer_ranges"], s["fp_params"]
    fp_values = sum(p["values"] for p in s["fp_parts"].values())
    fp_bytes = sum(p["bytes"] for p in s["fp_parts"].values())
    widths = "/".join(map(str, q["code_bits"]))
    pad = f"{widths}-bit codes, {q['values']:,} with the rotation's padding" if q["values"] != q["weights"] else \
        f"{widths}-bit codes"
    mask = f" + {q['mask_bits_per_weight']:.2f} bits of pruning mask" if q["mask_bytes"] else ""
    parts = ", ".join(f"{k} {v['values']:,}" for k, v in sorted(s["fp_parts"].items(), key=lambda kv: -kv[1]["values"]))
    lines = [
        (f"{path}: {s['file_bytes']:,} B for {n:,} parameters = {s['bits_per_param']:.2f} bits per parameter overall "
         f"({s['fp32_bytes'] / s['file_bytes']:.2f}x smaller than FP32, {s['fp32_bytes']:,} B)"),
        (f"quantized: {q['weights']:,} Linear weights of the Swin blocks ({100 * q['weights'] / n:.1f} % of the "
         f"parameters): {q['bits_per_weight']:.2f} bits per quantized weight ({pad}){mask}, "
         f"{q['bytes'] + q['mask_bytes']:,} B"),
        (f"floating point (FP32): {fp_values:,} parameters ({100 * fp_values / n:.1f} %), {fp_bytes:,} B "
         f"({100 * fp_bytes / s['file_bytes']:.0f} % of the file): {parts}"),
        (f"also in the file: quantizer ranges (l, u, alpha, beta; FP32) {r['values']:,} values, {r['bytes']:,} B; "
         f"header (settings, calibration log) {s['header_bytes']:,} B"),
    ]
    return "\n".join(lines)
