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


@pytest.mark.gpu
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_fast_dobi_on_cuda_picks_the_brute_force_k(bits):
    """On CUDA (torch.sort; the CPU path sorts with numpy) the fast DOBI agrees with the brute force on the same
    device, as on the CPU, and picks the CPU's k. The error sums themselves differ across devices by up to
    5e-4 relative (H200, benchmarks/calibration/results/run6_i12_profile/h200_dobi_cuda_vs_cpu.log: CUDA rounds
    the float32 levels differently), so across devices only the choice is compared."""
    for per_channel in (False, True):
        for t in _tensors(per_channel):
            for kind in ("paper", "asym", "sym"):
                fq = FakeQuant(bits, kind, channels=t.shape[0] if per_channel else None)
                ls, us = fq.candidates(t)
                cpu = dobi_errors(t, ls, us, kind, bits)
                gpu = dobi_errors(t.cuda(), ls.cuda(), us.cuda(), kind, bits).cpu()
                ref = dobi_errors_reference(t.cuda(), ls.cuda(), us.cuda(), kind, bits).double().cpu()
                assert torch.allclose(gpu, ref, rtol=1e-4, atol=1e-12), float(((gpu - ref).abs() / ref.clamp_min(1e-30)).max())
                assert torch.equal(gpu.argmin(0), ref.argmin(0)), (kind, per_channel, tuple(t.shape))
                assert torch.equal(gpu.argmin(0), cpu.argmin(0)), (kind, per_channel, tuple(t.shape))


def test_calibration_is_deterministic_on_cpu():
    """Same seed, same device and software: the same checkpoint tensors (hash) from two tiny runs."""
    import hashlib

    import numpy as np

    from compsrt.calibration.checkpoint import model_state
    from compsrt.calibration.data import PatchSampler
    from compsrt.calibration.distill import DistillSettings, calibrate
    from compsrt.calibration.qmodel import QuantConfig
    from compsrt.models.swinir import SwinIR, SwinIRConfig

    digests = []
    for pool in (0, 0, 4):
        torch.manual_seed(0)
        fp = SwinIR(SwinIRConfig(scale=2, depths=(2,), num_heads=(6,))).eval()
        rng = np.random.default_rng(0)
        imgs = [(rng.random((12, 12, 3)) * 255).astype(np.uint8) for _ in range(3)]
        st = DistillSettings(iters=3, batch=2, patch=8, dobi_batch=2, log_every=1, teacher_pool=pool)
        student, log = calibrate(fp, QuantConfig(4, "deploy"), PatchSampler(imgs, 8, "cpu", 0), st, progress=False)
        h = hashlib.sha256(repr(log["loss"]).encode())
        for name, t in sorted(model_state(student).items()):  # what save_checkpoint stores
            h.update(name.encode() + t.contiguous().numpy().tobytes())
        digests.append(h.hexdigest())
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]  # the teacher pool draws other patches: the hash does see a change
