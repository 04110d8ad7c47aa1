"""What a compressed model quantizes to: the quantization config, its bit-widths per site, and the named presets.

Torch-free (the CLI validates options before torch is imported). Bit-widths:

* ``bits`` is the default of both weights and activations (``--bits``); ``wbits`` / ``abits`` set them
  apart (``--wbits`` / ``--abits``), B in :data:`BITS`;
* ``overrides`` (``--site-bits``) set single sites: ``(pattern, target, bits)`` with ``target`` ``"w"``
  (the Linear's weight), ``"a"`` (its input, or an attention operand) or ``"wa"`` (both); the last
  matching override wins. A pattern is an ``fnmatch`` pattern over the site name
  (``layers.0.residual_group.blocks.1.mlp.fc2``, ``...blocks.1.attn.quant_attn``) or over its tail
  (``mlp.fc2`` matches every block's fc2);
* :data:`PRESETS` names the combinations documented for the engine (docs/calibration.md, "Presets").

Paper mode is the authors' W = A at 2-4 bits: no wbits != abits, no overrides, no 8 bits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from ..errors import CompsrtError

MODES = ("paper", "deploy")
BITS = (2, 3, 4, 8)
PAPER_BITS = (2, 3, 4)
TARGETS = ("w", "a", "wa")

# The one table of presets: name -> (weight bits, activation bits, per-site overrides, why).
# TensorRT runs every activation Q/DQ in INT8 and stores <= 4-bit weights as INT4 (weight-only), wider ones
# as INT8: A8 presets quantize to what the engine executes; W4A4 / W2A2 are the paper's, for comparison.
PRESETS: dict[str, tuple[int, int, tuple[tuple[str, str, int], ...], str]] = {
    "W8A8": (8, 8, (), "INT8 weights and activations"),
    "W4A8": (4, 8, (), "INT4 weights (weight-only in TensorRT), INT8 activations"),
    "W3A8": (3, 8, (), "3-bit weight codes in INT4 containers, INT8 activations"),
    "W2A8": (2, 8, (), "2-bit weight codes in INT4 containers, INT8 activations"),
    "W4A4": (4, 4, (), "the paper's W4A4 (4-bit activation grids inside INT8 in TensorRT)"),
    "W2A2": (2, 2, (), "the paper's W2A2 (2-bit activation grids inside INT8 in TensorRT)"),
    # the attention Linears' weights are the sensitive ones at 2 bits (benchmarks/calibration/site_sensitivity.py)
    "W2A8-attn4": (2, 8, (("attn.qkv.*", "w", 4), ("attn.proj", "w", 4)),
                   "4-bit attention weights (q, k, v, proj), 2-bit MLP weights (fc1, fc2), INT8 activations"),
}


def parse_site_bits(spec: str | None) -> tuple[tuple[str, str, int], ...]:
    """``--site-bits``: ``PATTERN[:w|:a]=B`` items separated by commas, or a JSON file ``{"PATTERN[:w|:a]": B}``."""
    if not spec:
        return ()
    if spec.endswith(".json"):
        path = Path(spec)
        try:
            items = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CompsrtError(f"--site-bits {spec}: cannot read it as JSON ({exc}); pass a file "
                               '{"PATTERN[:w|:a]": BITS} or PATTERN[:w|:a]=BITS,...') from None
        if not isinstance(items, dict):
            raise CompsrtError(f'--site-bits {spec} holds no JSON object; write {{"mlp.fc2:a": 8}}')
        pairs = [(str(k), v) for k, v in items.items()]
    else:
        pairs = []
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, eq, value = item.rpartition("=")
            if not eq or not key:
                raise CompsrtError(f"--site-bits item {item!r} is not PATTERN[:w|:a]=BITS (e.g. mlp.fc2:a=8)")
            pairs.append((key, value))
    out = []
    for key, value in pairs:
        pattern, target = key, "wa"
        if key[-2:] in (":w", ":a"):
            pattern, target = key[:-2], key[-1]
        try:
            b = int(value)
        except (TypeError, ValueError):
            raise CompsrtError(f"--site-bits {key}: bits {value!r} is not an integer of {BITS}") from None
        out.append((pattern, target, b))
    return tuple(out)


def site_matches(name: str, pattern: str) -> bool:
    return fnmatchcase(name, pattern) or fnmatchcase(name, "*." + pattern)


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 4
    mode: str = "deploy"
    prune: str | None = None  # None, "0.4" (unstructured ratio) or "2:4"
    clamp_codes: bool = False  # paper mode held to b-bit codes (deploy codes are always clamped)
    wbits: int | None = None  # None: bits
    abits: int | None = None  # None: bits
    overrides: tuple[tuple[str, str, int], ...] = field(default=())
    preset: str | None = None  # the preset it was made from (a label: wbits / abits / overrides hold the bits)

    def __post_init__(self):
        object.__setattr__(self, "wbits", self.bits if self.wbits is None else int(self.wbits))
        object.__setattr__(self, "abits", self.bits if self.abits is None else int(self.abits))
        object.__setattr__(self, "overrides", tuple((str(p), str(t), int(b)) for p, t, b in self.overrides))
        if self.mode not in MODES:
            raise CompsrtError(f"--mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "paper" and (self.wbits != self.abits or self.overrides):
            raise CompsrtError("paper mode is the authors' W = A: --wbits / --abits / --site-bits / --preset need "
                               "--mode deploy")
        allowed = PAPER_BITS if self.mode == "paper" else BITS
        for what, b in (("--bits", self.bits), ("--wbits", self.wbits), ("--abits", self.abits)):
            if b not in allowed:
                raise CompsrtError(f"{what} must be one of {allowed} in {self.mode} mode, got {b}")
        for pattern, target, b in self.overrides:
            if target not in TARGETS or b not in BITS or not pattern:
                raise CompsrtError(f"--site-bits {pattern}:{target}={b}: need a pattern, target w or a, bits in {BITS}")
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise CompsrtError(f"--preset must be one of {tuple(PRESETS)}, got {self.preset!r}")
            w, a, own, _ = PRESETS[self.preset]
            if (self.wbits, self.abits, self.overrides[: len(own)]) != (w, a, own):
                raise CompsrtError(f"config says preset {self.preset} but holds other bits; build it with "
                                   "QuantConfig.from_preset")
        if self.clamp_codes and self.mode != "paper":
            raise CompsrtError("--clamp-codes is for paper mode: deploy mode always clamps codes to b bits")
        if self.prune is not None:
            if self.prune == "2:4":
                if self.mode != "deploy":
                    raise CompsrtError("2:4 pruning exists only in deploy mode (the paper prunes unstructured)")
            else:
                try:
                    r = float(self.prune)
                except ValueError:
                    raise CompsrtError(f"--prune must be a ratio in (0, 1) or '2:4', got {self.prune!r}") from None
                if not 0 < r < 1:
                    raise CompsrtError(f"--prune ratio must be in (0, 1), got {r}")

    @classmethod
    def from_preset(cls, name: str, mode: str = "deploy", prune: str | None = None,
                    overrides: tuple = ()) -> "QuantConfig":
        """The preset's bits (``overrides`` are applied after the preset's own)."""
        if name not in PRESETS:
            raise CompsrtError(f"--preset must be one of {tuple(PRESETS)}, got {name!r}")
        if mode != "deploy":
            raise CompsrtError(f"--preset {name} is a deploy-mode preset; paper mode stays the authors' W = A (--bits)")
        w, a, own, _ = PRESETS[name]
        return cls(bits=w, mode=mode, prune=prune, wbits=w, abits=a, overrides=own + tuple(overrides), preset=name)

    def site_bits(self, name: str, target: str) -> int:
        """Bits of site ``name``'s weight (``target`` "w") or activation ("a")."""
        b = self.wbits if target == "w" else self.abits
        for pattern, t, bits in self.overrides:
            if target in t and site_matches(name, pattern):
                b = bits
        return b

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overrides"] = [list(o) for o in self.overrides]
        return d

    @property
    def label(self) -> str:
        """``W4A8`` or the preset's name, ``+N`` for N per-site overrides beyond the preset's own."""
        extra = len(self.overrides) - (len(PRESETS[self.preset][2]) if self.preset else 0)
        return (self.preset or f"W{self.wbits}A{self.abits}") + (f"+{extra}" if extra else "")

    @property
    def tag(self) -> str:
        p = "" if self.prune is None else ("_p24" if self.prune == "2:4" else f"_p{self.prune}")
        return f"{self.mode}_{self.label.lower().replace('+', '_mix')}{'_clamped' if self.clamp_codes else ''}{p}"
