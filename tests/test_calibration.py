"""CPU tests of the CompSRT calibration (tiny models and images, a few seconds in all)."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compsrt.calibration.checkpoint import load_compressed_model, pack, read_checkpoint, save_checkpoint, unpack
from compsrt.calibration.data import PatchSampler
from compsrt.calibration.distill import DistillSettings, calibrate, eval_distill_loss
from compsrt.hadamard import hadamard, rotate_last, rotate_tokens
from compsrt.calibration.qmodel import (QLinear, QuantConfig, activation_code_bits, freeze_model, prune_mask,
                                       quantize_model, quantizers, set_observe, weight_code_bits)
from compsrt.calibration.quant import FakeQuant, deploy_fq, floor_steps_, round_ste
from compsrt.errors import CompsrtError
from compsrt.models.swinir import SwinIR
from compsrt.sites import collect_sites
from tests.conftest import tiny_swinir

torch.set_num_threads(2)


def tiny_fp(seed: int = 0) -> SwinIR:
    return tiny_swinir(seed=seed, gain=5.0)  # larger weights than the init so quantization matters


def tiny_sampler(seed: int = 0, patch: int = 8) -> PatchSampler:
    rng = np.random.default_rng(seed)
    imgs = [(rng.random((12, 12, 3)) * 255).astype(np.uint8) for _ in range(3)]
    return PatchSampler(imgs, patch, "cpu", seed)


def tiny_settings(iters: int) -> DistillSettings:
    return DistillSettings(iters=iters, batch=2, patch=8, dobi_batch=2, log_every=5)


@pytest.mark.parametrize("n", [1, 2, 16, 64, 128])
def test_hadamard_orthonormal(n):
    h = hadamard(n, dtype=torch.float64)
    assert torch.allclose(h @ h.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert torch.equal(h, h.T)
    assert torch.allclose(h.abs(), torch.full((n, n), n**-0.5, dtype=torch.float64))
    with pytest.raises(ValueError):
        hadamard(60)


def test_rotated_matmuls_equal_fp_unquantized():
    torch.manual_seed(0)
    for m, out in ((60, 60), (60, 120), (120, 60)):
        x, w = torch.randn(5, m, dtype=torch.float64), torch.randn(out, m, dtype=torch.float64)
        assert torch.allclose(rotate_last(x) @ rotate_last(w).T, x @ w.T, atol=1e-10)
    q, k = torch.randn(2, 6, 64, 10, dtype=torch.float64), torch.randn(2, 6, 64, 10, dtype=torch.float64)
    assert torch.allclose(rotate_last(q) @ rotate_last(k).transpose(-2, -1), q @ k.transpose(-2, -1), atol=1e-10)
    p = torch.softmax(torch.randn(2, 6, 64, 64, dtype=torch.float64), -1)
    v = torch.randn(2, 6, 64, 10, dtype=torch.float64)
    assert torch.allclose(rotate_last(p) @ rotate_tokens(v), p @ v, atol=1e-10)


def test_deploy_model_unquantized_path_equals_fp():
    """Observe mode (FP pass-through) returns the FP output exactly; quantized 4-bit stays close."""
    fp = tiny_fp()
    q = quantize_model(copy.deepcopy(fp), QuantConfig(4, "deploy"))
    x = torch.rand(1, 3, 8, 8)
    set_observe(q, True)
    with torch.no_grad():
        assert torch.equal(q(x), fp(x))
    set_observe(q, False)


def test_codes_stay_in_range():
    fp = tiny_fp()
    for bits in (2, 4):
        q = quantize_model(copy.deepcopy(fp), QuantConfig(bits, "deploy", "0.4"))
        set_observe(q, True)
        with torch.no_grad():
            q(torch.rand(1, 3, 8, 8))
        set_observe(q, False)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        for s in collect_sites(q):
            if s.kind == "linear":
                c = s.codes
                assert c.dtype == np.int8 and int(c.min()) >= lo and int(c.max()) <= hi
                assert (c[~s.mask] == 0).all()
                assert (s.qmin, s.qmax) == (lo, hi)
        assert weight_code_bits(q) == activation_code_bits(q) == bits  # deploy codes are clamped to b bits
        fq = next(m for m in q.modules() if isinstance(m, QLinear)).aq
        codes = fq.codes(torch.randn(1000) * 100)
        assert codes.min() >= lo and codes.max() <= hi and torch.equal(codes, codes.round())


def test_deploy_linear_matches_explicit_qdq_contract():
    """The module output equals the export formula built only from the site contract's arrays, bit for bit."""
    fp = tiny_fp()
    q = quantize_model(copy.deepcopy(fp), QuantConfig(3, "deploy", "2:4"))
    x = torch.rand(1, 3, 8, 8)
    set_observe(q, True)
    with torch.no_grad():
        q(x)
    set_observe(q, False)
    freeze_model(q)
    site = next(s for s in collect_sites(q) if s.role == "fc2")
    mod = q.get_submodule(site.name)
    t = torch.randn(4, 64, site.m)
    xt = F.pad(t, (0, site.n - site.m)) @ hadamard(site.n)
    scale, shift = torch.tensor(site.scale), torch.tensor(site.shift)
    codes = torch.clamp(torch.round((xt - shift) / scale), site.qmin, site.qmax)
    w = torch.from_numpy(site.codes).float() * torch.from_numpy(site.w_scale)[:, None]
    y = F.linear(codes * scale, w, torch.from_numpy(site.bias))
    with torch.no_grad():
        assert torch.equal(mod(t), y)
    m = site.mask.reshape(site.out_features, -1, 4)
    assert (m.sum(-1) == 2).all()  # 2:4 along K


def test_ste_gradients():
    x = torch.tensor([0.2, 0.7, 1.49, -3.0], requires_grad=True)
    round_ste(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(4))
    t = torch.tensor([-100.0, -0.3, 0.2, 100.0], requires_grad=True)
    s = torch.tensor(0.25, requires_grad=True)
    deploy_fq(t, s, torch.tensor(0.0), -2, 1).sum().backward()
    assert torch.equal(t.grad, torch.tensor([0.0, 1.0, 1.0, 0.0]))  # clamp passes gradient inside only
    assert s.grad is not None and s.grad != 0
    for kind in ("paper", "asym", "sym"):
        fq = FakeQuant(2, kind)
        fq.dobi_(torch.randn(4096))
        fq(torch.randn(256) * 2).square().sum().backward()
        # paper: the zero-point z = l + beta cancels under the STE inside [l, u] (beta's gradient is 0 there)
        for name in ("l", "u", "alpha") + (("beta",) if kind == "asym" else ()):
            g = getattr(fq, name).grad
            assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, (kind, name)


def test_dobi_beats_minmax():
    torch.manual_seed(0)
    t = torch.cat([torch.randn(20000), torch.tensor([40.0, -35.0])])  # heavy outliers
    for kind in ("paper", "asym", "sym"):
        a, b = FakeQuant(3, kind), FakeQuant(3, kind)
        a.dobi_(t)
        b.minmax_(t)
        with torch.no_grad():
            ea = (a(t) + a.shift() - t).square().sum() if kind != "paper" else (a(t) - t).square().sum()
            eb = (b(t) + b.shift() - t).square().sum() if kind != "paper" else (b(t) - t).square().sum()
        assert ea < 0.5 * eb, (kind, float(ea), float(eb))
    w = torch.randn(8, 64)
    w[0, 0] = 30
    pc = FakeQuant(2, "sym", channels=8)
    pc.dobi_(w)
    assert pc.l.shape == (8, 1) and (pc.u > 0).all()


def test_prune_masks():
    w = torch.randn(60, 64)
    m = prune_mask(w, "0.4")
    assert int((~m).sum()) == round(0.4 * w.numel())
    assert w.abs()[~m].max() <= w.abs()[m].min()
    m24 = prune_mask(w, "2:4")
    assert (m24.reshape(60, 16, 4).sum(-1) == 2).all()


@pytest.mark.parametrize("cfg", [QuantConfig(2, "deploy"), QuantConfig(2, "paper", clamp_codes=True)], ids=str)
def test_short_calibration_lowers_distillation_loss(cfg):
    fp = tiny_fp()
    x = tiny_sampler(seed=7).sample(4)
    before, _ = calibrate(fp, cfg, tiny_sampler(), tiny_settings(0), progress=False)
    after, log = calibrate(fp, cfg, tiny_sampler(), tiny_settings(20), progress=False)
    lb, la = eval_distill_loss(fp, before, x), eval_distill_loss(fp, after, x)
    assert log["iters_done"] == 20
    assert la < lb, (lb, la)


def _check_pack_parts(stats: dict, path, cfg) -> None:
    """The pack's accounting: every byte in a part, every FP parameter in a named part, and the summary says it."""
    from compsrt.cli.calibration import pack_summary

    q, r, fp = stats["quantized_weights"], stats["quantizer_ranges"], stats["fp_parts"]
    assert q["bytes"] + q["mask_bytes"] + r["bytes"] + sum(p["bytes"] for p in fp.values()) + stats["header_bytes"] \
        == stats["file_bytes"]
    assert q["weights"] + sum(p["values"] for p in fp.values()) == stats["fp_params"]
    assert "other" not in fp and {"LayerNorms", "patch embedding conv", "upsampler (conv + pixel shuffle)"} <= set(fp)
    assert q["bits_per_weight"] == pytest.approx(8 * q["bytes"] / q["weights"])
    assert (q["mask_bytes"] > 0) == (cfg.prune is not None)
    text = pack_summary(path, stats)
    assert f"{stats['bits_per_param']:.2f} bits per parameter overall" in text
    assert f"{q['bits_per_weight']:.2f} bits per quantized weight" in text
    assert "floating point (FP32)" in text and "LayerNorms" in text and "patch embedding conv" in text


@pytest.mark.parametrize("cfg", [QuantConfig(2, "deploy", "2:4"), QuantConfig(3, "paper", "0.4")])
def test_packed_checkpoint_roundtrip_bit_exact(tmp_path, cfg):
    fp = tiny_fp()
    student, log = calibrate(fp, cfg, tiny_sampler(), tiny_settings(2), progress=False)
    ckpt = save_checkpoint(student, {"scale": 2, "log": log}, tmp_path / "c.pt")
    meta, tensors = read_checkpoint(ckpt)
    stats = pack(meta, tensors, tmp_path / "c.csrt")
    meta2, tensors2 = unpack(tmp_path / "c.csrt")
    assert meta2 == meta and list(tensors2) == list(tensors)
    for k, v in tensors.items():
        assert tensors2[k].dtype == v.dtype and torch.equal(tensors2[k], v), k
    assert stats["file_bytes"] == (tmp_path / "c.csrt").stat().st_size
    assert stats["bits_per_param"] < 32
    _check_pack_parts(stats, tmp_path / "c.csrt", cfg)
    m1, _ = load_compressed_model(ckpt)
    m2, _ = load_compressed_model(tmp_path / "c.csrt")
    x = torch.rand(1, 3, 8, 16)
    with torch.no_grad():
        y = student(x)
        assert torch.equal(m1(x), y) and torch.equal(m2(x), y)


def test_code_span_grows_when_paper_steps_shrink():
    fq = FakeQuant(3, "paper")
    with torch.no_grad():
        fq.l.fill_(-0.7)
        fq.u.fill_(0.7)
        assert int(fq.code_span()) == 7  # 2**3 - 1 levels apart at alpha = 0
        codes = fq.codes(torch.linspace(-2, 2, 1001))
        assert int(codes.max() - codes.min()) == 7
        fq.alpha.fill_(-0.5 * 1.4 / 7)  # half the step: twice the span, one bit more
        codes = fq.codes(torch.linspace(-2, 2, 1001))
        assert int(fq.code_span()) == int(codes.max() - codes.min()) == 14
        clamped = FakeQuant(3, "paper", clamp=True)
        clamped.load_state_dict(fq.state_dict())
        assert int(clamped.code_span()) == 7
        codes = clamped.codes(torch.linspace(-2, 2, 1001))
        assert codes.min() == 0 and codes.max() == 7
    assert int(FakeQuant(3, "asym").code_span()) == 7  # deploy: clamped, whatever the step


@pytest.mark.parametrize("clamp", [False, True])
def test_paper_codes_outgrow_their_bits_unless_clamped(tmp_path, clamp):
    """Paper mode does not clamp codes: a step that DQC shrank 100x needs wider codes, kept exactly
    (int32); with ``clamp_codes`` they stay b-bit."""
    fp = tiny_fp()
    student, log = calibrate(fp, QuantConfig(3, "paper", clamp_codes=clamp), tiny_sampler(), tiny_settings(2),
                             progress=False)
    ql = next(m for m in student.modules() if isinstance(m, QLinear))
    with torch.no_grad():
        for fq in (ql.wq, ql.aq):
            fq.alpha.copy_(-0.99 * (fq.u - fq.l) / fq.nlev)
    assert (weight_code_bits(student) > 3) == (activation_code_bits(student) > 3) == (not clamp)
    ckpt = save_checkpoint(student, {"scale": 2, "log": log}, tmp_path / "c.pt")
    meta, tensors = read_checkpoint(ckpt)
    codes = next(v for k, v in tensors.items() if k.endswith(".codes"))
    assert codes.dtype == (torch.int8 if clamp else torch.int32) and (int(codes.abs().max()) > 127) == (not clamp)
    assert QuantConfig(**meta["quant"]).clamp_codes == clamp
    stats = pack(meta, tensors, tmp_path / "c.csrt")
    assert (stats["code_and_mask_bits_per_quantized_weight"] > 3.2) == (not clamp)  # 3 bits x 16/15 padding
    _, tensors2 = unpack(tmp_path / "c.csrt")
    for k, v in tensors.items():
        assert tensors2[k].dtype == v.dtype and torch.equal(tensors2[k], v), k
    x = torch.rand(1, 3, 8, 16)
    with torch.no_grad():
        assert torch.equal(load_compressed_model(tmp_path / "c.csrt")[0](x), student(x))


def test_config_and_cli_errors(tmp_path):
    with pytest.raises(CompsrtError):
        QuantConfig(5, "deploy")
    with pytest.raises(CompsrtError):
        QuantConfig(4, "paper", "2:4")
    with pytest.raises(CompsrtError):
        QuantConfig(4, "deploy", "1.5")
    with pytest.raises(CompsrtError, match="--clamp-codes"):
        QuantConfig(4, "deploy", clamp_codes=True)
    from compsrt.cli import calibration as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["calibrate", "--scale", "4", "--bits", "5", "--out", str(tmp_path / "x.pt")])
    with pytest.raises(CompsrtError):
        args.func(args)
    args = parser.parse_args(["calibrate", "--scale", "4", "--bits", "4", "--step-floor", "1.5", "--out", str(tmp_path / "x.pt")])
    with pytest.raises(CompsrtError, match="--step-floor"):
        args.func(args)
    args = parser.parse_args(["pack", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.csrt")])
    with pytest.raises(CompsrtError):
        args.func(args)


def test_calibrate_cli_warns_when_codes_outgrow_their_bits(tmp_path, monkeypatch, capsys):
    from compsrt.calibration import pipeline
    from compsrt.cli import calibration as cli

    log = {"iters_done": 1, "seconds_total": 1.0, "seconds_dobi": 0.5, "collapsed_steps": 7, "device": "cpu",
           "patch": 32, "dobi_batch": 4, "seconds_train": 0.4}
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["calibrate", "--scale", "2", "--bits", "3", "--mode", "paper", "--out", str(tmp_path / "x.pt")])
    for wb, ab, warned in ((3, 3, False), (9, 3, True), (3, 5, True)):
        monkeypatch.setattr(pipeline, "compress", lambda *a, **k: {"log": dict(log, weight_code_bits=wb, activation_code_bits=ab),
                                                                  "seconds_data": 0.1})
        assert args.func(args) == 0
        out = capsys.readouterr().out
        assert (f"need up to {wb} bits (weights) and {ab} bits (activations), not 3" in out) == warned, out
    seen = []
    monkeypatch.setattr(pipeline, "compress", lambda scale, cfg, *a, **k: seen.append(cfg) or
                        {"log": dict(log, weight_code_bits=3, activation_code_bits=3), "seconds_data": 0.1})
    args = parser.parse_args(["calibrate", "--scale", "2", "--bits", "3", "--mode", "paper", "--clamp-codes",
                              "--out", str(tmp_path / "x.pt")])
    assert args.func(args) == 0 and seen == [QuantConfig(3, "paper", clamp_codes=True)]
    settings = []
    monkeypatch.setattr(pipeline, "compress", lambda scale, cfg, out, st, **k: settings.append(st) or
                        {"log": dict(log, weight_code_bits=3, activation_code_bits=3, compiled=st.compile, bf16=st.bf16),
                         "seconds_data": 0.1})
    for flag, want, said in (("auto", None, "Swin blocks eager"), ("on", True, "Swin blocks compiled, bf16"),
                             ("off", False, "Swin blocks eager")):
        args = parser.parse_args(["calibrate", "--scale", "2", "--bits", "3", "--fast-blocks", flag,
                                  "--out", str(tmp_path / "x.pt")])
        capsys.readouterr()
        assert args.func(args) == 0 and settings[-1].compile is want and settings[-1].bf16 is want
        assert said in capsys.readouterr().out


@pytest.mark.gpu
def test_cuda_graph_calibration_runs():
    fp = tiny_fp()
    imgs = [(np.random.default_rng(0).random((12, 12, 3)) * 255).astype(np.uint8)]
    s = PatchSampler(imgs, 8, "cuda", 0)
    st, log = calibrate(fp, QuantConfig(4, "deploy"), s, replace(tiny_settings(10), compile=True, bf16=True),
                        progress=False)
    assert log["iters_done"] == 10 and log["graph"] and log["compiled"] and log["bf16"], log
    assert "compile_error" not in log, log
    eager_st = replace(tiny_settings(10), compile=False, bf16=False)
    _, eager = calibrate(fp, QuantConfig(4, "deploy"), s, eager_st, progress=False)
    # inductor's kernels and bf16 round differently, and Adam's first steps amplify that: close, not equal
    (_, a), (_, b) = log["loss"][-1], eager["loss"][-1]
    assert a < 0.9 * log["loss_first"] and abs(a - b) < 0.2 * b, (log["loss"], eager["loss"])


# fused (Triton) per-tensor quantizers against the eager formulas in float64: value, input and parameter
# gradients; the fused FP32 error may be at most twice the eager FP32 error (+1e-6 of the magnitude)
FUSED_VS_EAGER = """
import copy, sys, torch
from compsrt.calibration.quant import FakeQuant
dev, worst = sys.argv[1], 0.0
torch.manual_seed(0)
for kind, clamp in (("paper", False), ("paper", True), ("asym", False), ("sym", False)):
    for bits, shape in ((2, (3, 2, 7, 16)), (4, (2, 700, 64))):
        fq = FakeQuant(bits, kind, clamp=clamp).to(dev)
        t = torch.randn(*shape, device=dev) * 2
        fq.dobi_(t)
        with torch.no_grad():
            fq.alpha.add_(-0.3 * fq.step() if clamp else 0.01)  # clamp: a shrunk step, codes beyond [0, nlev]
            fq.beta.add_(0.0 if kind == "sym" else 0.05)
            fq.l.copy_(t.flatten()[3])  # a tie of max(t, l) at one element
        w = torch.randn(*shape, device=dev)
        outs = []
        for fused, dtype in ((False, torch.float64), (False, torch.float32), (True, torch.float32)):
            q = copy.deepcopy(fq).to(dtype)
            q.fused = fused
            x = t.to(dtype).clone().requires_grad_(True)
            y = q(x)
            (y * w.to(dtype)).sum().backward()
            grads = [torch.zeros(()) if p.grad is None else p.grad.cpu() for p in (q.l, q.u, q.alpha, q.beta)]
            outs.append([v.detach().cpu().double() for v in [y, x.grad] + grads])
        for ref, eager, fused in zip(*outs):  # the fused error against float64 within the eager FP32 error
            scale = 1 + ref.abs().max()
            e_eager, e_fused = float((eager - ref).abs().max() / scale), float((fused - ref).abs().max() / scale)
            worst = max(worst, e_fused - 2 * e_eager)
print(worst)
"""


def _fused_vs_eager(device: str) -> float:
    env = dict(os.environ, TRITON_INTERPRET="1" if device == "cpu" else "0")
    r = subprocess.run([sys.executable, "-c", FUSED_VS_EAGER, device], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return float(r.stdout.strip().splitlines()[-1])


def test_fused_quantizers_match_eager_in_triton_interpreter():
    pytest.importorskip("triton")
    assert _fused_vs_eager("cpu") < 1e-6


@pytest.mark.gpu
def test_fused_quantizers_match_eager_on_gpu_and_calibrate():
    pytest.importorskip("triton")
    assert _fused_vs_eager("cuda") < 1e-6
    imgs = [(np.random.default_rng(0).random((12, 12, 3)) * 255).astype(np.uint8)]
    s = PatchSampler(imgs, 8, "cuda", 0)
    for mode, per_block in (("deploy", 10), ("paper", 16)):  # deploy weights are per channel (eager)
        st, log = calibrate(tiny_fp(), QuantConfig(4, mode), s, replace(tiny_settings(10), compile=False),
                            progress=False)
        assert log["graph"] and log["fused_quantizers"] == per_block * 2, log
        assert not any(fq.fused for fq in quantizers(st))


def test_dqc_step_relative_lr_avoids_weight_step_collapse():
    """Regression for the GPU W4A4 run where DQC raised the loss (docs/calibration.md, "DQC diagnosis").

    With unscaled weights the 4-bit per-channel weight steps are ~0.006, below Adam's first update of
    lr = 1e-2: the authors' absolute lr drives most of them to the S_MIN clamp, where their gradient is
    zero for good, and the loss rises; the step-relative update (deploy default) lowers it.
    """
    fp = tiny_swinir(2, 0)
    cfg = QuantConfig(4, "deploy")
    x = tiny_sampler(seed=7).sample(4)
    before, _ = calibrate(fp, cfg, tiny_sampler(), tiny_settings(0), progress=False)
    lb = eval_distill_loss(fp, before, x)
    absolute, log_a = calibrate(fp, cfg, tiny_sampler(), replace(tiny_settings(6), lr_mode="absolute"), progress=False)
    assert log_a["lr_mode"] == "absolute" and log_a["collapsed_steps"] > 0
    assert eval_distill_loss(fp, absolute, x) > lb  # the failure this test guards against
    after, log = calibrate(fp, cfg, tiny_sampler(), tiny_settings(6), progress=False)
    assert log["lr_mode"] == "step" and log["collapsed_steps"] == 0
    assert eval_distill_loss(fp, after, x) < lb
    with pytest.raises(CompsrtError):
        calibrate(fp, cfg, tiny_sampler(), replace(tiny_settings(1), lr_mode="bogus"), progress=False)


def test_step_floor_keeps_steps_off_the_clamp():
    """``floor_steps_`` raises only the steps below the floor, to the floor; calibrate applies it in step mode."""
    fq = FakeQuant(4, "sym", channels=3)
    with torch.no_grad():
        fq.l.copy_(torch.tensor([[-1.0], [-1.0], [-1.0]]))
        fq.u.copy_(torch.tensor([[1.0], [1.0], [1.0]]))
        fq.alpha.copy_(torch.tensor([[0.0], [-0.2], [-0.5]]))  # raw steps 0.133, -0.067, -0.367
    other = FakeQuant(2, "asym")  # raw step (1 - (-1)) / 3 - 0.9 < 0
    with torch.no_grad():
        other.alpha.fill_(-0.9)
    floor_steps_([fq, other], [torch.full((3, 1), 0.05), torch.tensor(0.1)])
    assert torch.allclose(fq.step(), torch.tensor([[2 / 15], [0.05], [0.05]]))
    assert torch.allclose(other.step(), torch.tensor(0.1))
    fp = tiny_swinir(2, 0)
    s0 = calibrate(fp, QuantConfig(4, "deploy"), tiny_sampler(), tiny_settings(0), progress=False)[0]
    st = calibrate(fp, QuantConfig(4, "deploy"), tiny_sampler(), replace(tiny_settings(8), lr=0.5), progress=False)[0]
    ratios = torch.cat([(b.step() / a.step()).flatten() for a, b in zip(quantizers(s0), quantizers(st))])
    assert ratios.min() >= 0.25 - 1e-4 and (ratios < 0.9).any()  # moved, but never below the floor


def test_device_defaults_fill_only_what_is_unset():
    from compsrt.calibration.distill import DEVICE_DEFAULTS, for_device

    cpu = for_device(DistillSettings(), torch.device("cpu"))
    assert (cpu.patch, cpu.dobi_batch) == DEVICE_DEFAULTS["cpu"] == (32, 4)
    gpu = for_device(DistillSettings(), torch.device("cuda"))
    assert (gpu.patch, gpu.dobi_batch) == DEVICE_DEFAULTS["cuda"] == (64, 32)
    assert for_device(DistillSettings(patch=16, dobi_batch=2), torch.device("cuda")).dobi_batch == 2
    has_triton = importlib.util.find_spec("triton") is not None  # compiled bf16 blocks: CUDA, >= 1,000 iterations
    assert (gpu.compile, gpu.bf16, cpu.compile, cpu.bf16) == (has_triton, has_triton, False, False)
    short = for_device(DistillSettings(iters=999), torch.device("cuda"))
    assert (short.compile, short.bf16) == (False, False)


def test_iteration_default_follows_the_device_and_an_explicit_value_wins():
    from compsrt.calibration.distill import DEFAULT_ITERS, for_device

    assert for_device(DistillSettings(), torch.device("cpu")).iters == DEFAULT_ITERS["cpu"] == 100
    assert for_device(DistillSettings(), torch.device("cuda")).iters == DEFAULT_ITERS["cuda"] == 400
    assert for_device(DistillSettings(iters=7), torch.device("cuda")).iters == 7
    assert for_device(DistillSettings(iters=0), torch.device("cpu")).iters == 0


def test_calibrate_reports_one_estimate_after_timing_the_first_iterations():
    from compsrt.calibration.distill import PROBE_ITERS

    seen = []
    calibrate(tiny_fp(), QuantConfig(4, "deploy"), tiny_sampler(), tiny_settings(6), progress=False,
              on_estimate=lambda *a: seen.append(a))
    assert len(seen) == 1
    per_iter, left, iters, device = seen[0]
    assert per_iter > 0 and (left, iters, device) == (6 - 1 - PROBE_ITERS, 6, "cpu")
    seen.clear()  # too short to time: no estimate, no error
    calibrate(tiny_fp(), QuantConfig(4, "deploy"), tiny_sampler(), tiny_settings(2), progress=False,
              on_estimate=lambda *a: seen.append(a))
    assert seen == []


def test_long_calibration_gets_one_line_with_the_estimate_and_how_to_shorten_it():
    from compsrt.cli.calibration import estimate_line

    assert estimate_line(9.5, 2, 5, "cpu", explicit_iters=True) is None  # 19 s: no line
    line = estimate_line(9.5, 97, 100, "cpu", explicit_iters=False)
    assert "about 15 min left for 100 iterations (the CPU default) at 9.5 s each on cpu" in line
    assert "--iters 18 takes about 3 min" in line and "--device cuda" in line
    gpu = estimate_line(0.12, 4000, 4003, "cuda", explicit_iters=True)
    assert "8 min" in gpu and "default" not in gpu and "--device" not in gpu


def _calibrate_tiny(**kw):
    from compsrt.models.swinir import SwinTransformerBlock

    fp = tiny_fp()
    st = replace(tiny_settings(2), log_every=1, teacher_pool=4, **kw)  # pool: only the student's blocks compile
    student, log = calibrate(fp, QuantConfig(4, "deploy"), tiny_sampler(), st, progress=False)
    assert not any("forward" in vars(b) for m in (fp, student) for b in m.modules() if isinstance(b, SwinTransformerBlock))
    return log


def test_compiled_blocks_compute_the_eager_step(monkeypatch):
    """The compiled Swin blocks (aot_eager here: dynamo's graphs, no C++ compiler) train exactly as the eager
    ones, the models come back with their own forward, and a compiler failure falls back to the eager blocks."""
    from compsrt.calibration import distill

    eager = _calibrate_tiny(compile=False)
    monkeypatch.setattr(distill, "COMPILE_BACKEND", "aot_eager")
    log = _calibrate_tiny(compile=True)
    assert log["compiled"] and not eager["compiled"] and log["loss"] == eager["loss"]

    def broken(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        log = _calibrate_tiny(compile=True)
    assert not log["compiled"] and "no compiler here" in log["compile_error"] and log["loss"] == eager["loss"]


def test_compiled_blocks_are_shared_between_configurations_of_equal_bits(monkeypatch):
    """In one process, a second calibration of the same bit-widths (pruned or not) compiles no new graph; other
    bit-widths do (the quantizers' bits are constants of the graph, the pruning masks are tensors). The GPU
    runner's cost per configuration (docs/calibration.md, "Cost") rests on this."""
    from torch._dynamo.utils import counters

    from compsrt.calibration import distill

    monkeypatch.setattr(distill, "COMPILE_BACKEND", "aot_eager")

    def new_graphs(cfg) -> int:
        before = counters["stats"]["unique_graphs"]
        st = replace(tiny_settings(2), log_every=1, teacher_pool=4, compile=True)
        assert calibrate(tiny_fp(), cfg, tiny_sampler(), st, progress=False)[1]["compiled"]
        return counters["stats"]["unique_graphs"] - before

    torch._dynamo.reset()
    assert new_graphs(QuantConfig(4, "deploy")) > 0
    assert new_graphs(QuantConfig(4, "deploy", "0.4")) == 0
    assert new_graphs(QuantConfig(2, "deploy")) > 0


def test_quantizer_arithmetic_stays_fp32_under_bf16_autocast():
    from compsrt.calibration.distill import build_student, dobi_init, fast_blocks

    fq = FakeQuant(4, "asym")
    t = torch.randn(64, 16)
    fq.dobi_(t)
    tb = t.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fq(tb)
    assert y.dtype == torch.float32 and torch.equal(y, fq(tb.float()))
    student = build_student(tiny_fp(), QuantConfig(4, "deploy"))
    x = tiny_sampler().sample(2)
    dobi_init(student, x)
    with torch.no_grad():
        ref = student(x)
        with fast_blocks(student, x, False, True):  # the blocks' matmuls in bf16: close to FP32, not equal
            y = student(x)
        assert torch.equal(student(x), ref)  # and the blocks are the FP32 ones again
    assert y.dtype == torch.float32 and 0 < float((y - ref).abs().mean()) < 0.05 * float(ref.abs().mean())


def test_training_lr_cache_fills_once_from_concurrent_callers(tmp_path, monkeypatch):
    """Two callers filling one empty LR cache at once both get the images; the cache holds one file per image
    and no temporary (each writer has its own temporary name, and hidden files are never read as images)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from compsrt.calibration.data import load_training_lr, lr_cache

    monkeypatch.setenv("COMPSRT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for i in range(6):
        (tmp_path / "data/train/T91").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(tmp_path / f"data/train/T91/{i}.png")
    (lr_cache(2) / "T91").mkdir(parents=True)
    (lr_cache(2) / "T91" / ".0.png.stale.part.png").write_bytes(b"not a png")  # a writer that died
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: load_training_lr(2, tmp_path / "data", sets=("T91",), progress=False), range(2)))
    for run in runs:
        assert [n for n, _ in run] == [f"T91/{i}" for i in range(6)] and all(lr.shape == (12, 10, 3) for _, lr in run)
    assert sorted(p.name for p in (lr_cache(2) / "T91").iterdir() if not p.name.startswith(".")) == \
        [f"{i}.png" for i in range(6)]
    again = load_training_lr(2, tmp_path / "data", sets=("T91",), progress=False)  # from the cache
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(runs[0], again))
