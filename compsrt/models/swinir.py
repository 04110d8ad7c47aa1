"""SwinIR-light (Liang et al., 2021) with the parameter names of the official release.

Differences from the official code that matter for this project:
- no fixed-size ``attn_mask`` / ``relative_position_index`` buffers: the shifted-window mask is
  built for whatever size arrives (cached per size), so the network runs on any tile;
- the attention operands pass through identity hook modules (``quant_q`` … ``quant_attn``) so
  that calibration can put quantizers there without rewriting the block;
- intermediate RSTB outputs can be returned for feature distillation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

SCALES = (2, 3, 4)


@dataclass(frozen=True)
class SwinIRConfig:
    """Hyper-parameters of SwinIR-light; defaults are the official lightweight model."""

    scale: int = 4
    in_chans: int = 3
    embed_dim: int = 60
    depths: tuple[int, ...] = (6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6)
    window_size: int = 8
    mlp_ratio: float = 2.0
    img_range: float = 1.0
    rgb_mean: tuple[float, float, float] = field(default=(0.4488, 0.4371, 0.4040))

    def to_dict(self) -> dict:
        return asdict(self)


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(B * nW, ws * ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """Index into the (2ws-1)^2 bias table for every pair of positions in a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def shifted_window_regions(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """Region id (0..8) of every token of every window (nW, ws*ws) after the cyclic shift."""
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    return window_partition(img, ws).squeeze(-1)


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """Additive mask (nW, ws*ws, ws*ws) that stops attention across the cyclic-shift seams."""
    win = shifted_window_regions(h, w, ws, shift)
    mask = win[:, None, :] - win[:, :, None]
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("rel_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        # Hook points for quantizers of the attention operands (identity in the FP model).
        self.quant_q = nn.Identity()
        self.quant_k = nn.Identity()
        self.quant_v = nn.Identity()
        self.quant_attn = nn.Identity()
        self.softmax = nn.Softmax(dim=-1)  # a module, so that activation ranges see the logits
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.rel_index.reshape(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = self.quant_q(q) @ self.quant_k(k).transpose(-2, -1)
        attn = attn + self.position_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.softmax(attn)
        x = (self.quant_attn(attn) @ self.quant_v(v)).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self._masks: dict[tuple, torch.Tensor] = {}

    def mask_for(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        """The shifted-window mask for an (h, w) feature map, built once per size and device."""
        if self.shift_size == 0:
            return None
        key = (h, w, device)
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(h, w, self.window_size, self.shift_size).to(device)
        return self._masks[key]

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        h, w = x_size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = self.attn(window_partition(x, self.window_size), mask=self.mask_for(h, w, x.device))
        x = window_reverse(windows, self.window_size, h, w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + x.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, x_size)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer block: Swin blocks, then a 3x3 conv, plus a skip (``1conv``)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float):
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        y = self.residual_group(x, x_size)
        b, hw, c = y.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, *x_size))
        return y.flatten(2).transpose(1, 2) + x


class PatchEmbedNorm(nn.Module):
    """Patch size 1: flatten to tokens and apply the patch norm (official name ``patch_embed.norm``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


class SwinIR(nn.Module):
    """SwinIR-light with the ``pixelshuffledirect`` upsampler.

    ``forward`` takes RGB in [0, 1] of any size: it reflect-pads to a multiple of the window and
    crops the output back to ``scale`` times the input size.
    """

    def __init__(self, config: SwinIRConfig | None = None, **overrides):
        super().__init__()
        cfg = config or SwinIRConfig(**overrides)
        if cfg.scale not in SCALES:
            raise ValueError(f"SwinIR-light scale must be one of {SCALES}, got {cfg.scale}")
        self.config = cfg
        self.scale = cfg.scale
        self.window_size = cfg.window_size
        self.img_range = cfg.img_range
        self.register_buffer("mean", torch.tensor(cfg.rgb_mean).view(1, 3, 1, 1), persistent=False)
        dim = cfg.embed_dim
        self.conv_first = nn.Conv2d(cfg.in_chans, dim, 3, 1, 1)
        self.patch_embed = PatchEmbedNorm(dim)
        self.layers = nn.ModuleList(
            RSTB(dim, d, h, cfg.window_size, cfg.mlp_ratio) for d, h in zip(cfg.depths, cfg.num_heads)
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, 1, 1)
        self.upsample = nn.Sequential(
            nn.Conv2d(dim, cfg.scale**2 * cfg.in_chans, 3, 1, 1), nn.PixelShuffle(cfg.scale)
        )
        self.apply(_init_weights)

    def pad_to_window(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ws = self.window_size
        ph, pw = (-h) % ws, (-w) % ws
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        return x

    def forward_features(self, x: torch.Tensor, stage_outputs: list | None = None) -> torch.Tensor:
        x_size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x, x_size)
            if stage_outputs is not None:
                stage_outputs.append(x)
        x = self.norm(x)
        b, _, c = x.shape
        return x.transpose(1, 2).reshape(b, c, *x_size)

    def forward(self, x: torch.Tensor, stage_outputs: list | None = None) -> torch.Tensor:
        """Upscale ``x`` (B, 3, H, W); append the four RSTB outputs to ``stage_outputs`` if given."""
        h, w = x.shape[-2:]
        x = self.pad_to_window(x)
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x, stage_outputs)) + x
        x = self.upsample(x)
        x = x / self.img_range + self.mean
        return x[..., : h * self.scale, : w * self.scale]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
