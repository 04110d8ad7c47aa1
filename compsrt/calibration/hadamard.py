"""Orthonormal Sylvester Hadamard matrices and zero-padding to powers of two."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..plugins import hadamard_matrix

_CACHE: dict[tuple, torch.Tensor] = {}


def next_pow2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


def hadamard(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The n x n Sylvester Hadamard matrix scaled by 1/sqrt(n): symmetric, orthonormal, its own inverse.

    Entries are exactly +-2**(-k/2); for n a power of 4 (16, 64) they are exact binary fractions.
    """
    key = (n, torch.device(device), dtype)
    h = _CACHE.get(key)
    if h is None:
        h = torch.from_numpy(hadamard_matrix(n)).to(device=device, dtype=dtype)
        _CACHE[key] = h
    return h


def pad_last(x: torch.Tensor, n: int) -> torch.Tensor:
    """Zero-pad the last axis to width ``n``."""
    m = x.shape[-1]
    return x if m == n else F.pad(x, (0, n - m))


def rotate_last(x: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """[x, 0] @ H_n along the last axis (n defaults to the next power of two)."""
    n = n or next_pow2(x.shape[-1])
    return pad_last(x, n) @ hadamard(n, x.device, x.dtype)


def rotate_tokens(x: torch.Tensor) -> torch.Tensor:
    """H_n @ x along the second-to-last axis (the token axis of a window; n must be a power of two)."""
    n = x.shape[-2]
    return hadamard(n, x.device, x.dtype) @ x
