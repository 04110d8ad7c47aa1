"""Per-stage wall-clock timing (host stages) and CUDA-event timing (device stages)."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

STAGES = ("decode", "tiling", "h2d", "compute", "d2h", "stitching", "encode")


class StageTimer:
    """Sums seconds per stage; device stages may be added from CUDA events with :meth:`add`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def as_dict(self) -> dict[str, float]:
        return {k: self.seconds.get(k, 0.0) for k in STAGES} | {
            k: v for k, v in self.seconds.items() if k not in STAGES
        }
