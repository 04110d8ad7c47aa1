"""What each SwinIR-light parameter is, in words a user knows: the parts that a compressed model keeps in
floating point are named this way by ``compsrt pack`` and ``compsrt inspect``.

CompSRT quantizes the Linear weights of the Swin blocks (attention q, k, v and proj; MLP fc1 and fc2); every
other parameter stays FP32. :func:`part_of` maps a state-dict name (official SwinIR names) to its part.
"""

from __future__ import annotations

import re

QUANTIZED = "Linear weights of the Swin blocks (attention qkv, proj; MLP fc1, fc2)"
# (part, pattern over the parameter name), first match wins; the order is the network's
PARTS: tuple[tuple[str, str], ...] = (
    ("patch embedding conv", r"^conv_first\."),
    ("LayerNorms", r"(^|\.)norm\d?\.(weight|bias)$"),
    ("relative position bias tables", r"\.relative_position_bias_table$"),
    (QUANTIZED, r"\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight$"),
    ("biases of those Linears", r"\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)(\.\w+)?\.bias$"),
    ("residual-group convs", r"^layers\.\d+\.conv\."),
    ("conv after the body", r"^conv_after_body\."),
    ("upsampler (conv + pixel shuffle)", r"^(upsample|conv_before_upsample|conv_last)\."),
)


def part_of(name: str) -> str:
    for part, pattern in PARTS:
        if re.search(pattern, name):
            return part
    return "other"


def parameter_parts(named_numels) -> dict[str, int]:
    """``{part: parameter count}`` in network order from ``(name, numel)`` pairs."""
    counts = {part: 0 for part, _ in PARTS}
    for name, n in named_numels:
        part = part_of(name)
        counts[part] = counts.get(part, 0) + int(n)
    return {k: v for k, v in counts.items() if v}
