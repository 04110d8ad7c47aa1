"""Finding, downloading and loading SwinIR-light weights in the official release format.

Files are read with ``torch.load(weights_only=True)``: a weights file from the internet never runs
pickled code. A file is accepted only if every learned tensor of the model is present with the right
shape; the non-learned buffers of the official release (``attn_mask``, ``relative_position_index``)
are ignored because this implementation recomputes them for any input size.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..artifacts import FP, read_model_file
from ..errors import CompsrtError
from ..files import atomic_path, sha256_file
from ..paths import cache_dir, weights_dir
from .swinir import SCALES, SwinIR, SwinIRConfig

OFFICIAL_URL = (
    "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
    "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{scale}.pth"
)
IGNORED_BUFFERS = ("attn_mask", "relative_position_index")


def local_weights_name(scale: int) -> str:
    return f"swinir_light_x{scale}.pth"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The learned tensors of a weights file (``params``, else ``params_ema``, else the dict itself)."""
    path = Path(path)
    if not path.is_file():
        raise CompsrtError(f"weights file {path} does not exist; pass an existing .pth file with --weights")
    f = read_model_file(path, "weights file")
    if f.kind != FP:
        raise CompsrtError(f"{path} is a {f.kind} compsrt checkpoint, not FP weights; pass it with --checkpoint")
    return fp_state(f.state)


def fp_state(obj: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The learned tensors of an FP state dict (``module.`` prefixes and recomputed buffers dropped)."""
    return {k.removeprefix("module."): v for k, v in obj.items() if not k.endswith(IGNORED_BUFFERS)}


def scale_of_state_dict(state: dict[str, torch.Tensor]) -> int | None:
    """The upscaling factor implied by the upsampler's output channels (3 * scale**2)."""
    w = state.get("upsample.0.weight")
    if w is None or w.ndim != 4 or w.shape[0] % 3:
        return None
    s = round((w.shape[0] // 3) ** 0.5)
    return s if s * s * 3 == w.shape[0] else None


def check_state_dict(state: dict[str, torch.Tensor], scale: int, source: str) -> None:
    """Raise one clear error listing every missing, unexpected or mis-shaped learned tensor."""
    expected = {k: v.shape for k, v in SwinIR(SwinIRConfig(scale=scale)).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items() if k in state and state[k].shape != s]
    if not (missing or unexpected or wrong):
        return
    found = scale_of_state_dict(state)
    hint = f" (the file holds x{found} weights)" if found and found != scale else ""
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            shown = ", ".join(items[:5]) + (f", … {len(items) - 5} more" if len(items) > 5 else "")
            parts.append(f"{label}: {shown}")
    raise CompsrtError(
        f"{source} is not SwinIR-light x{scale} weights{hint}; " + "; ".join(parts)
        + f". Pass weights for x{scale} or choose --scale to match the file."
    )


def load_swinir(scale: int, weights: str | os.PathLike | None = None, sha256: str | None = None) -> SwinIR:
    """A SwinIR-light model in eval mode with weights resolved by :func:`resolve_weights`."""
    path = resolve_weights(scale, weights, sha256=sha256)
    state = read_state_dict(path)
    check_state_dict(state, scale, str(path))
    model = SwinIR(SwinIRConfig(scale=scale))
    model.load_state_dict(state, strict=True)
    return model.eval()


def resolve_weights(
    scale: int,
    path: str | os.PathLike | None = None,
    sha256: str | None = None,
    url: str | None = None,
) -> Path:
    """An explicit path; else ``<weights dir>/swinir_light_x{scale}.pth``; else the official download.

    A download lands in the user cache (``compsrt.paths.cache_dir``) and is validated by tensor
    names and shapes, and by ``sha256`` when one is pinned, before it is renamed into place.
    """
    if scale not in SCALES:
        raise CompsrtError(f"scale must be one of {SCALES}, got {scale}")
    if path is not None:
        chosen = Path(path)
    elif (local := weights_dir() / local_weights_name(scale)).is_file():
        chosen = local
    else:
        url = url or OFFICIAL_URL.format(scale=scale)
        chosen = cache_dir() / url.rsplit("/", 1)[-1]
        if not chosen.is_file():
            download_weights(url, chosen, scale, sha256)
    check_sha256(chosen, sha256, f"{chosen}")
    return chosen


def check_sha256(path: Path, expected: str | None, source: str) -> None:
    if expected and (actual := sha256_file(path)) != expected.lower():
        raise CompsrtError(f"{source} has sha256 {actual}, not the pinned {expected}; fix the pin or the file")


def download_weights(url: str, dest: Path, scale: int, sha256: str | None = None) -> Path:
    """Fetch ``url`` with a progress bar into ``dest`` atomically, validating before the rename."""
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CompsrtError(
            f"no local weights for x{scale} and the download from {url} failed ({exc}); put "
            f"{local_weights_name(scale)} in $COMPSRT_WEIGHTS_DIR (now {weights_dir()}) or pass --weights"
        ) from None
    with response, atomic_path(dest) as tmp:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=f"download x{scale}") as bar:
            while block := response.read(1 << 16):
                f.write(block)
                bar.update(len(block))
        check_sha256(tmp, sha256, f"download from {url}")
        check_state_dict(read_state_dict(tmp), scale, f"download from {url}")
    return dest
