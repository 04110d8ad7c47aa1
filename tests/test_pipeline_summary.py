"""`make demo`'s summary: the recommended preset and engine variant, the engine beside the FP engine built the
same way, bits per quantized weight and per parameter, and latency beside FP (no pipeline run: its dict)."""

from __future__ import annotations

from compsrt.calibration.config import PRESETS
from compsrt.pipeline import DEMO_PRESET, ENGINE_VARIANT, summary_lines
from compsrt.runtime.profile import fp_comparison


def _profile(p50: float) -> dict:
    return {"label": "x", "backend": {}, "end_to_end_ms": {"p50": p50}, "stages": {"compute": {"mean_ms": p50 - 5}}}


def _summary(p50: float, fp_p50: float) -> dict:
    return {
        "tile": 64,
        "sample": {"image": "sample.png", "size": [96, 64], "psnr_onnxruntime_vs_fp_db": 40.0,
                   "psnr_fakequant_vs_fp_db": 40.1, "psnr_onnxruntime_vs_fakequant_db": 55.0},
        "sizes": {"fp_weights_bytes": 3_818_027, "onnx_bytes": 2_149_343, "packed_bytes": 1_815_646,
                  "packed_stats": {"bits_per_param": 15.62, "fp_params": 929_628,
                                   "quantized_weights": {"bits_per_weight": 4.27},
                                   "fp_parts": {"LayerNorms": {"values": 6_000}, "others": {"values": 232_428}}}},
        "engine": {"built": True, "tensorrt": {"module": "tensorrt_rtx"}, "variant": f"{DEMO_PRESET} {ENGINE_VARIANT}",
                   "bytes": 11_128_028, "fp": {"bytes": 9_658_204}},
        "profile": {"end_to_end_p50_ms": p50, "compute_mean_ms": p50 - 5,
                    "fp_reference": fp_comparison(_profile(p50), _profile(fp_p50))},
        "seconds_total": 120.0,
    }


def test_demo_uses_an_int8_activation_preset_and_the_compact_engine_variant():
    wbits, abits, _, _ = PRESETS[DEMO_PRESET]
    assert abits == 8 and wbits <= 8  # TensorRT runs activations in INT8: the demo quantizes to what runs
    assert ENGINE_VARIANT == "fused-quant"


def test_summary_sets_the_engine_beside_the_fp_engine_and_says_when_slower():
    text = "\n".join(summary_lines(_summary(356.0, 175.0), 4))
    assert "W4A8 fused-quant 11.13 MB beside the FP engine built the same way 9.66 MB (1.15x)" in text
    assert "15.6 bits per parameter: 4.27 bits per quantized Linear weight; 26 % of the parameters stay FP32" in text
    assert "W4A8 is 2.03x SLOWER than the FP model" in text and "smaller, not faster" in text
    faster = "\n".join(summary_lines(_summary(100.0, 175.0), 4))
    assert "faster than the FP model" in faster and "smaller, not faster" not in faster
