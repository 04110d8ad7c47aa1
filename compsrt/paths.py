"""Where data, weights and caches live; every location can be overridden by an environment variable.

The default data root is ``../shared/data`` seen from the working directory or from the repository
checkout, whichever exists, so commands work from the repository root and from the checkout's CI clone.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$COMPSRT_DATA``, else the first existing ``../shared/data`` (cwd, then repository)."""
    env = os.environ.get("COMPSRT_DATA")
    if env:
        return Path(env)
    for base in (Path.cwd(), REPO_ROOT):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "data"


def weights_dir() -> Path:
    return Path(os.environ.get("COMPSRT_WEIGHTS_DIR") or data_root() / "weights")


def benchmarks_dir() -> Path:
    return Path(os.environ.get("COMPSRT_BENCHMARKS") or data_root() / "benchmarks")


def cache_dir() -> Path:
    """``$COMPSRT_CACHE``, else ``$XDG_CACHE_HOME/compsrt``, else ``~/.cache/compsrt``."""
    env = os.environ.get("COMPSRT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "compsrt"
