"""DOBI initialisation + DQC distillation: the CompSRT calibration loop.

teacher = FP SwinIR, student = its quantized copy, both in eval mode with frozen weights; only the
quantizers' (l, u, alpha, beta) learn. Adam lr 1e-2, betas (0.9, 0.99), constant lr, gradients clipped by
value at 1, batch 16 of 64x64 LR patches with flips/rotations. Loss = L1(student, teacher) + 5 * sum over
the four RSTB outputs of MSE between per-sample L2-normalised features.

On CUDA the whole step (teacher, student forward and backward, clipping, Adam) is captured once in a
CUDA graph and replayed; matmuls use TF32 during training (evaluation stays FP32), and the Swin blocks run
through torch.compile (``DistillSettings.compile``) inside that graph, the student's under bf16 autocast
(``DistillSettings.bf16``) with FP32 quantizer arithmetic.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import platform
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import CompsrtError
from ..models.swinir import SwinTransformerBlock
from .data import PatchSampler
from .qmodel import (QuantConfig, activation_code_bits, quantize_model, quantizers, set_observe, trainable_params,
                     weight_code_bits)
from .quant import S_MIN, floor_steps_

FEAT_WEIGHT = 5.0
STEP_FLOOR = 0.25  # lr_mode "step": no quantizer step may fall below this fraction of its DOBI step


@dataclass
class DistillSettings:
    iters: int | None = None  # None: the device default (DEFAULT_ITERS)
    batch: int = 16
    patch: int | None = None  # None: the device default (DEVICE_DEFAULTS)
    lr: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.99)
    clip: float = 1.0
    dobi_batch: int | None = None  # None: the device default (DEVICE_DEFAULTS)
    seed: int = 0
    cuda_graph: bool = True
    # on CUDA with ``compile`` off, per-tensor quantizers run through the Triton kernels of .fused_quant
    # (1.6x / 2.4x faster eager DQC step in deploy / paper mode on the H200, half the memory); ignored on CPU
    # or without Triton
    fused_quantizers: bool = True
    tf32: bool = True
    log_every: int = 50
    deadline: float | None = None  # time.time() after which the loop stops early (recorded in meta)
    # "absolute": the authors' recipe, Adam moves every l, u, alpha, beta by ~lr per step whatever the
    # quantizer's step size; "step": each quantizer's Adam update is multiplied by its step size after
    # DOBI (per channel for per-channel weights), i.e. Adam on l/s0, u/s0, alpha/s0, beta/s0, so lr is a
    # fraction of the step per iteration; "auto": "step" in deploy mode, "absolute" in paper mode.
    # See docs/calibration.md, "DQC diagnosis": with "absolute", lr 1e-2 and 4-bit per-channel weight
    # steps of ~0.004-0.02, the first Adam step drives most weight steps below zero (clamped at S_MIN),
    # where their gradient is zero for good: the channel's weights are quantized to ~0.
    lr_mode: str = "auto"
    # "step" mode: after each update, every quantizer's step is kept >= step_floor x its DOBI step (0: off).
    # Without it, step-relative updates still let a few steps drift to the S_MIN clamp, where they get no
    # gradient again (docs/calibration.md, "Why, and what to do next").
    step_floor: float = STEP_FLOOR
    # > 0: the frozen teacher runs once, up front, on a fixed pool of this many augmented patches (outputs and
    # stage features kept on the device, ~4.7 MB per 64x64 x4 patch); each step then draws its batch from the
    # pool instead of running the teacher. 0: fresh patches and a teacher forward every step (the authors').
    teacher_pool: int = 0
    # True: every Swin block (the student's; the teacher's too when it runs per step) goes through torch.compile
    # (inductor; compiled in the first warm-up iteration, about a minute on the H200, then captured in the
    # CUDA-graph step). Compiled student blocks compute the eager quantizer formulas, which inductor fuses
    # with their neighbours, instead of the Triton kernels. None: on CUDA with Triton for runs of at least
    # COMPILE_MIN_ITERS iterations; never by default on a CPU (compile time, a C++ compiler). H200, deploy
    # W4A4 x4: 0.128 -> 0.077 s/iter (docs/calibration.md).
    compile: bool | None = None
    # True: the student's Swin blocks run under bf16 autocast (their matmuls in bf16; LayerNorm, softmax, the
    # residual stream, the convs and every quantizer's arithmetic stay FP32: FakeQuant computes on t.float());
    # the teacher stays FP32. None: as ``compile``. With compile, H200: 0.077 -> 0.059 s/iter, same loss curve
    # within 1-2 % per logged batch and held-out loss within seed noise (deploy W4A4 x4, 200 iterations).
    bf16: bool | None = None


PROBE_ITERS = 2  # iterations timed for the run's estimate (calibrate's on_estimate)
COMPILE_BACKEND = "inductor"  # the CPU tests use "aot_eager": the same graphs, no C++ compiler, seconds
# the compiled bf16 blocks cost about 60 s of compilation on the H200 and save 0.069 s per iteration
# (0.1275 -> 0.0589): they pay from about 900 iterations, so shorter runs stay eager by default
COMPILE_MIN_ITERS = 1000
# (patch, DOBI batch) when not given: the authors' 64x64 patches and a DOBI batch of 32 on a GPU; on a CPU,
# 32x32 patches (a step ~4x cheaper) and a DOBI batch of 4, so a 10-iteration run takes minutes, not hours
DEVICE_DEFAULTS = {"cuda": (64, 32), "cpu": (32, 4)}
# DQC iterations when not given, from the measured plateau (docs/calibration.md, "Ten times the iterations buys
# at most 0.03 dB"): on the H200, each of six x4 deploy configurations at 227-400 iterations is within 0.031 dB
# (Set5, Set14, B100) of the same configuration at 3,666-4,000 (W4A4: -0.16 at 400, -0.171 at 4,000 on Set5), so
# a GPU gets 400 (under a minute of eager steps at ~0.12 s) rather than the
# authors' 4,000. On the 2-core CPU (32x32 patches, ~9.5 s per W4A8 iteration) 400 would take an hour; there the
# distillation loss is flat from 40 to 100 iterations (0.00510 -> 0.00508, "DQC diagnosis"), so a CPU gets 100.
DEFAULT_ITERS = {"cuda": 400, "cpu": 100}


def default_iters(device_type: str) -> int:
    return DEFAULT_ITERS.get(device_type, DEFAULT_ITERS["cpu"])


def for_device(st: "DistillSettings", dev: torch.device) -> "DistillSettings":
    """``st`` with the device defaults filled in for the fields left at None."""
    patch, dobi = DEVICE_DEFAULTS.get(dev.type, DEVICE_DEFAULTS["cpu"])
    iters = default_iters(dev.type) if st.iters is None else st.iters
    compile_ = dev.type == "cuda" and iters >= COMPILE_MIN_ITERS and importlib.util.find_spec("triton") is not None
    return replace(st, iters=iters, patch=patch if st.patch is None else st.patch,
                   dobi_batch=dobi if st.dobi_batch is None else st.dobi_batch,
                   compile=compile_ if st.compile is None else st.compile,
                   bf16=compile_ if st.bf16 is None else st.bf16)


def _autocast_bf16(fwd, device_type: str):
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return fwd(*args, **kwargs)

    return run


@contextmanager
def fast_blocks(model: nn.Module, x: torch.Tensor, compile_: bool, bf16: bool):
    """While inside, every Swin block of ``model`` runs under bf16 autocast and/or through torch.compile: an
    instance-level ``forward``, removed on exit, so the model leaves as it came (the student is evaluated and
    exported eagerly, the teacher is the caller's). One compiled graph per block kind (shifted or not, grad
    or not, first block or not) serves every block, and later calibrations in the process."""
    blocks = [b for b in model.modules() if isinstance(b, SwinTransformerBlock)] if compile_ or bf16 else []
    for b in blocks:
        b.forward = _autocast_bf16(b.forward, x.device.type) if bf16 else b.forward
    if compile_ and blocks:
        with torch.no_grad():  # fills the per-size caches (shift masks, Hadamard matrices), which a trace must not build
            model(x)
        for b in blocks:
            b.forward = torch.compile(b.forward, backend=COMPILE_BACKEND, dynamic=False, fullgraph=True)
    try:
        if compile_:  # student and teacher, modes and bit-widths in one process: more than the default 8 graphs
            with torch._dynamo.config.patch(recompile_limit=64):
                yield
        else:
            yield
    finally:
        for b in blocks:
            del b.forward


def _normalized(f: torch.Tensor) -> torch.Tensor:
    flat = f.flatten(1)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def distill_loss(s_out, t_out, s_feats, t_feats) -> torch.Tensor:
    loss = F.l1_loss(s_out, t_out)
    for a, b in zip(s_feats, t_feats):
        loss = loss + FEAT_WEIGHT * F.mse_loss(_normalized(a), _normalized(b))
    return loss


@torch.no_grad()
def dobi_init(student: nn.Module, x: torch.Tensor, progress: bool = False) -> None:
    """One FP forward pass; every activation quantizer keeps its best of 100 shrinking ranges."""
    set_observe(student, True)
    watched = [fq for fq in quantizers(student) if fq.observe]
    bar = tqdm(total=len(watched), desc="DOBI", unit="quantizer", disable=not progress, leave=False)
    hooks = [fq.register_forward_hook(lambda *_: bar.update(1)) for fq in watched]
    try:
        student(x)
    finally:
        for h in hooks:
            h.remove()
        bar.close()
        set_observe(student, False)


LR_MODES = ("auto", "absolute", "step")


def resolve_lr_mode(lr_mode: str, cfg: QuantConfig) -> str:
    if lr_mode not in LR_MODES:
        raise CompsrtError(f"lr_mode must be one of {LR_MODES}, got {lr_mode!r}")
    if lr_mode == "auto":
        return "step" if cfg.mode == "deploy" else "absolute"
    return lr_mode


@torch.no_grad()
def optimizer_step(opt, params: list, scales: list | None) -> None:
    """One Adam step; with ``scales`` (step-relative mode) Adam's update of each parameter is taken in units
    of its quantizer's DOBI step, i.e. Adam on p / s0."""
    if scales is None:
        opt.step()
        return
    with torch.no_grad():
        prev = [p.detach().clone() for p in params]
    opt.step()
    with torch.no_grad():
        delta = torch._foreach_sub([p.detach() for p in params], prev)
        torch._foreach_mul_(delta, scales)
        torch._foreach_add_(prev, delta)
        for p, v in zip(params, prev):
            p.copy_(v)


def update_scales(student: nn.Module) -> list[torch.Tensor]:
    """Per trainable tensor (order of :func:`trainable_params`), the quantizer's current step, shaped like it."""
    out = []
    for fq in quantizers(student):
        s0 = fq.step().detach().clone()
        for p in (fq.l, fq.u, fq.alpha, fq.beta):
            if p.requires_grad:
                out.append(s0.expand_as(p).clone())
    return out


@torch.no_grad()
def collapsed_steps(student: nn.Module) -> int:
    """Number of quantizer steps (per channel for per-channel weights) sitting at the S_MIN clamp."""
    return sum(int((fq.step() <= 2 * S_MIN).sum()) for fq in quantizers(student))


def build_student(fp: nn.Module, cfg: QuantConfig) -> nn.Module:
    return quantize_model(copy.deepcopy(fp).eval(), cfg)


def calibrate(fp: nn.Module, cfg: QuantConfig, sampler: PatchSampler, settings: DistillSettings,
              progress: bool = True, on_estimate=None) -> tuple[nn.Module, dict]:
    """Compress ``fp`` (eval, on the sampler's device); returns the student (not frozen) and a log dict.

    ``on_estimate(seconds_per_iter, iters_left, iters, device_type)`` is called once, after :data:`PROBE_ITERS` timed
    iterations past the first (which warms the kernels up), so a caller can say how long the run will take."""
    dev = sampler.device
    settings = for_device(replace(settings, patch=settings.patch or sampler.patch), dev)  # the sampler's patches
    torch.manual_seed(settings.seed)
    old_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if dev.type == "cuda" and settings.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        with ExitStack() as blocks:  # compiled / bf16 Swin blocks (fast_blocks), whatever happens
            return _calibrate(fp, cfg, sampler, settings, progress, blocks, on_estimate)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_tf32


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _calibrate(fp, cfg, sampler, st: DistillSettings, progress, blocks: ExitStack, on_estimate=None):
    dev = sampler.device
    lr_mode = resolve_lr_mode(st.lr_mode, cfg)
    t0 = time.perf_counter()
    teacher = fp.to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = build_student(teacher, cfg).to(dev)
    dobi_x = sampler.sample(st.dobi_batch)
    dobi_init(student, dobi_x, progress)
    _sync(dev)
    t_dobi = time.perf_counter() - t0
    params = trainable_params(student)
    scales = update_scales(student) if lr_mode == "step" else None
    floored = quantizers(student) if lr_mode == "step" and st.step_floor > 0 else []
    floors = [st.step_floor * fq.step().detach().clone() for fq in floored]
    if scales is not None and len(scales) != len(params):
        raise CompsrtError("internal: update scales do not match the trainable tensors")
    use_graph = st.cuda_graph and dev.type == "cuda" and st.iters > 0
    use_fused = (st.fused_quantizers and not st.compile and dev.type == "cuda"  # compiled: inductor fuses them
                 and importlib.util.find_spec("triton") is not None)
    fused = [fq for fq in quantizers(student) if fq.l.ndim == 0] if use_fused else []  # no Triton (Jetson): eager
    for fq in fused:
        fq.fused = True
    opt = torch.optim.Adam(params, lr=st.lr, betas=st.betas, capturable=use_graph)
    static_x = torch.empty(st.batch, 3, st.patch, st.patch, device=dev)
    t_pool = time.perf_counter()
    pool = TeacherPool(teacher, sampler, st.teacher_pool, st.batch, st.seed) if st.teacher_pool > 0 else None
    _sync(dev)
    t_pool = time.perf_counter() - t_pool
    static_t = pool.buffers() if pool is not None else None

    def next_batch():
        if pool is None:
            static_x.copy_(sampler.sample(st.batch))
        else:
            pool.draw_(static_x, static_t)

    def step():
        with torch.no_grad():
            if static_t is None:
                t_feats: list = []
                t_out = teacher(static_x, stage_outputs=t_feats)
            else:
                t_out, t_feats = static_t[0], static_t[1:]
        s_feats: list = []
        s_out = student(static_x, stage_outputs=s_feats)
        loss = distill_loss(s_out, t_out, s_feats, t_feats)
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, st.clip)
        optimizer_step(opt, params, scales)
        if floored:
            floor_steps_(floored, floors)
        return loss.detach()

    log = {"loss": [], "graph": False, "fused_quantizers": len(fused), "compiled": bool(st.compile), "bf16": bool(st.bf16)}

    def enter_blocks(compile_: bool) -> None:
        shape = torch.zeros_like(static_x)  # not a drawn batch: the compiled run sees the eager run's batches
        blocks.enter_context(fast_blocks(student, shape, compile_, bool(st.bf16)))
        if pool is None:  # the teacher stays FP32 (TF32 matmuls)
            blocks.enter_context(fast_blocks(teacher, shape, compile_, False))

    def first_step():  # compiles; a compiler failure falls back to eager blocks (recorded in the log)
        try:
            return step()
        except Exception as exc:
            if not st.compile:
                raise
            log.update(compiled=False, compile_error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
            warnings.warn(f"torch.compile failed, calibrating with eager blocks: {log['compile_error']}")
            blocks.close()
            enter_blocks(False)
            opt.zero_grad(set_to_none=True)
            return step()

    enter_blocks(bool(st.compile))
    losses_seen = []
    it = 0
    graph = None
    static_loss = None
    bar = tqdm(total=st.iters, desc=f"calibrate {cfg.tag}", disable=not progress, unit="it")
    t_train = time.perf_counter()
    stopped_early = False
    # warm-up iterations run eagerly (and on a side stream when a graph will be captured)
    warm = 3 if use_graph else 0
    if use_graph:
        s = torch.cuda.Stream(dev)
        s.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(s):
            for _ in range(min(warm, st.iters)):
                next_batch()
                opt.zero_grad(set_to_none=True)
                losses_seen.append(first_step() if it == 0 else step())
                it += 1
                bar.update(1)
        torch.cuda.current_stream(dev).wait_stream(s)
        if it < st.iters:
            try:
                graph = torch.cuda.CUDAGraph()
                opt.zero_grad(set_to_none=True)
                next_batch()
                with torch.cuda.graph(graph):
                    static_loss = step()
                log["graph"] = True
                # capture records but does not run the step: the next replay is the real iteration
            except Exception as exc:  # fall back to eager
                log["graph_error"] = f"{exc.__class__.__name__}: {str(exc)[:300]}"
                graph = None
                torch.cuda.synchronize(dev)
    t_steady, it_steady = time.perf_counter(), it  # after warm-up, compilation and graph capture
    probe_start = max(it_steady, 1)  # the first iteration warms the kernels up: not timed
    t_probe = t_steady if it == probe_start else None
    while it < st.iters:
        if st.deadline is not None and time.time() > st.deadline:
            stopped_early = True
            break
        if graph is not None:
            next_batch()
            graph.replay()
            cur = static_loss
        else:
            next_batch()
            opt.zero_grad(set_to_none=True)
            cur = first_step() if it == 0 else step()
        it += 1
        bar.update(1)
        if on_estimate is not None and it in (probe_start, probe_start + PROBE_ITERS):
            _sync(dev)
            if it == probe_start:
                t_probe = time.perf_counter()
            elif t_probe is not None:
                on_estimate((time.perf_counter() - t_probe) / PROBE_ITERS, st.iters - it, st.iters, dev.type)
        if it % st.log_every == 0 or it == st.iters:
            v = float(cur)
            log["loss"].append((it, v))
            bar.set_postfix(loss=f"{v:.5f}")
            if not math.isfinite(v):
                raise CompsrtError(f"calibration diverged at iteration {it} (loss {v})")
    bar.close()
    _sync(dev)
    t_end = time.perf_counter()
    blocks.close()  # the models get their own forward back (on an exception: calibrate closes it)
    for fq in fused:
        fq.fused = False  # evaluation and export use the eager formulas
    log.update(
        iters_done=it, iters_requested=st.iters, stopped_early=stopped_early,
        seconds_dobi=t_dobi, seconds_teacher_pool=t_pool, teacher_pool=st.teacher_pool, seconds_train=t_end - t_train, seconds_total=t_end - t0,
        seconds_per_iter=(t_end - t_train) / max(it, 1), seconds_setup=t_steady - t_train,
        seconds_per_iter_steady=(t_end - t_steady) / max(it - it_steady, 1), n_quantizers=len(quantizers(student)),
        lr_mode=lr_mode, collapsed_steps=collapsed_steps(student), weight_code_bits=weight_code_bits(student),
        activation_code_bits=activation_code_bits(student),
        patch=st.patch, dobi_batch=st.dobi_batch, n_trainable=sum(p.numel() for p in params), device=str(torch.cuda.get_device_name(dev)) if dev.type == "cuda" else platform.processor() or "cpu",
        torch=str(torch.__version__),
    )
    if losses_seen:
        log["loss_first"] = float(losses_seen[0])
    student.eval()
    return student, log


class TeacherPool:
    """The frozen teacher's outputs and stage features on a fixed pool of augmented patches, computed once;
    batches are drawn from it with replacement (a seeded generator), so a step needs no teacher forward."""

    @torch.no_grad()
    def __init__(self, teacher: nn.Module, sampler: PatchSampler, size: int, batch: int, seed: int):
        xs, outs = [], []
        for i in range(0, size, batch):
            x = sampler.sample(min(batch, size - i))
            feats: list = []
            out = teacher(x, stage_outputs=feats)
            xs.append(x)
            outs.append([out] + feats)
        self.x = torch.cat(xs)
        self.t = [torch.cat(parts) for parts in zip(*outs)]  # output, then the four stage features
        self.batch = batch
        self.gen = torch.Generator(device=self.x.device).manual_seed(seed + 1)

    def buffers(self) -> list[torch.Tensor]:
        """Static tensors (one batch) the step reads the teacher's output and features from."""
        return [torch.empty((self.batch, *t.shape[1:]), device=t.device, dtype=t.dtype) for t in self.t]

    @torch.no_grad()
    def draw_(self, x: torch.Tensor, t: list[torch.Tensor]) -> None:
        idx = torch.randint(0, self.x.shape[0], (self.batch,), device=self.x.device, generator=self.gen)
        torch.index_select(self.x, 0, idx, out=x)
        for dst, src in zip(t, self.t):
            torch.index_select(src, 0, idx, out=dst)


@torch.no_grad()
def eval_distill_loss(teacher, student, x) -> float:
    tf, sf = [], []
    t = teacher(x, stage_outputs=tf)
    s = student(x, stage_outputs=sf)
    return float(distill_loss(s, t, sf, tf))
