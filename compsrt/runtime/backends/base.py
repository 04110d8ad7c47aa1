"""The runner interface every backend implements; only plain numpy crosses it.

A backend maps a float32 batch (N, 3, h, w) in [0, 1] to float32 (N, 3, s*h, s*w); ``tile`` and
``batch`` are fixed for exported graphs and engines (``None`` = any). :meth:`Backend.run` splits
or pads batches to the fixed batch and times the stages (h2d, compute, d2h) into a
:class:`~compsrt.runtime.timing.StageTimer`, so the tiler and the profiler do not care which backend
runs. Backends are context managers: ``with open_backend(...) as b:`` releases device memory.
"""

from __future__ import annotations

import numpy as np

from ...errors import CompsrtError
from ..timing import StageTimer


class Interrupted(CompsrtError):
    """Work given up because the run was stopped (Ctrl-C): not a failure of the input."""


class Backend:
    name = "backend"
    scale: int
    tile: tuple[int, int] | None = None  # fixed (h, w) of the graph, None = any size
    batch: int | None = None  # fixed batch of the graph, None = any
    device = "cpu"

    def infer(self, x: np.ndarray, timer: StageTimer) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def cancel(self) -> None:
        """Give up the batch running in another thread where the runtime can (it raises :class:`Interrupted`);
        the backend runs nothing more afterwards. Default: the batch finishes."""

    def run(self, x: np.ndarray, timer: StageTimer | None = None) -> np.ndarray:
        """Upscale ``x`` (N, 3, h, w) float32, honouring a fixed batch by splitting and padding."""
        timer = timer or StageTimer()
        if self.tile is not None and tuple(x.shape[2:]) != tuple(self.tile):
            raise CompsrtError(f"{self.name}: input {x.shape[3]}x{x.shape[2]} does not match the fixed tile "
                               f"{self.tile[1]}x{self.tile[0]}")
        if self.batch is None or x.shape[0] == self.batch:
            return self.infer(np.ascontiguousarray(x, dtype=np.float32), timer)
        outs = []
        b = self.batch
        for i in range(0, x.shape[0], b):
            chunk = x[i : i + b]
            n = chunk.shape[0]
            if n < b:  # pad the last batch by repeating its last tile
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            outs.append(self.infer(np.ascontiguousarray(chunk, dtype=np.float32), timer)[:n])
        return np.concatenate(outs)

    def memory(self) -> dict[str, int | None]:
        """Peak device bytes used by this backend where it can tell (None otherwise)."""
        return {"device_peak_bytes": None}

    def describe(self) -> dict:
        return {"backend": self.name, "device": str(self.device), "scale": self.scale,
                "tile": list(self.tile) if self.tile else None, "batch": self.batch}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
