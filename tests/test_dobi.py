"""DOBI from one sort (``quant.dobi_errors``) against the brute force it replaces (``dobi_errors_reference``)."""

from __future__ import annotations

import pytest
import torch

from compsrt.calibration.quant import DOBI_STEPS, FakeQuant, dobi_errors, dobi_errors_reference

torch.set_num_threads(2)


def _tensors(per_channel: bool):
    g = torch.Generator().manual_seed(0)
    if per_channel:  # rotated weights: channels of different scales, one with an outlier, one all zero (pruned)
        w = torch.randn(24, 64, generator=g) * torch.rand(24, 1, generator=g) * 0.2
        w[3, 5] = 2.0
        w[7] = 0
        yield w
        yield torch.randn(16, 128, generator=g).pow(3)
    else:
        yield torch.randn(3, 2000, generator=g)  # Gaussian
        yield torch.randn(8000, generator=g).pow(3)  # heavy tails
        p = torch.softmax(torch.randn(8, 64, 64, generator=g) * 3, -1)
        yield p @ torch.linalg.qr(torch.randn(64, 64, generator=g))[0]  # rotated attention probabilities
        yield torch.cat([torch.rand(4000, generator=g), torch.tensor([30.0])])  # one-sided, one outlier


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("kind", ["paper", "asym", "sym"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_fast_dobi_picks_the_brute_force_k(bits, kind, per_channel):
    for t in _tensors(per_channel):
        fq = FakeQuant(bits, kind, channels=t.shape[0] if per_channel else None)
        ls, us = fq.candidates(t)
        fast = dobi_errors(t, ls, us, kind, bits)
        ref = dobi_errors_reference(t, ls, us, kind, bits).double()
        assert fast.shape == ref.shape == ((DOBI_STEPS, t.shape[0]) if per_channel else (DOBI_STEPS,))
        # the reference sums FP32 squared errors: agreement to its own rounding (1e-4 relative, 8-bit worst case)
        assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-12), float(((fast - ref).abs() / ref.clamp_min(1e-30)).max())
        assert torch.equal(fast.argmin(0), ref.argmin(0)), (kind, bits, tuple(t.shape))
        fq.dobi_(t)
        assert torch.equal(fq.dobi_k, ref.argmin(0))
        if per_channel and t.shape[0] == 24:
            assert fq.dobi_k[7] == 0  # the all-zero channel: every k ties, the first wins


def test_fast_dobi_chooses_by_the_quantizers_own_error():
    """The chosen range minimises the error of the quantizer as it then runs (forward), on a shifted tensor."""
    t = torch.randn(50000, generator=torch.Generator().manual_seed(1)) * 0.3 + 2.0
    for kind in ("paper", "asym", "sym"):
        fq = FakeQuant(4, kind)
        fq.dobi_(t)
        with torch.no_grad():
            err = (fq(t) + fq.shift() - t).square().sum() if kind != "paper" else (fq(t) - t).square().sum()
            ls, us = fq.candidates(t)
        assert float(err) == pytest.approx(float(dobi_errors(t, ls, us, kind, 4).min()), rel=1e-4)
        assert 0 < int(fq.dobi_k) < DOBI_STEPS
