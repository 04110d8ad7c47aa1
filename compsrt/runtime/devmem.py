"""A thin device-memory layer for the TensorRT backend: pycuda when importable, else cuda-python.

Only what the backend needs: device buffers, page-locked (pinned) host arrays, one stream,
asynchronous copies, events with elapsed time, and the device's name / compute capability.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import CompsrtError

log = logging.getLogger(__name__)


class DeviceLayer:
    kind = "none"

    def alloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def pinned(self, shape, dtype) -> np.ndarray: ...
    def htod_async(self, dst: int, src: np.ndarray) -> None: ...
    def dtoh_async(self, dst: np.ndarray, src: int) -> None: ...
    def event(self): ...
    def record(self, ev) -> None: ...
    def elapsed_s(self, start, end) -> float: ...
    def synchronize(self) -> None: ...
    def mem_info(self) -> tuple[int, int]: ...

    @property
    def stream_handle(self) -> int: ...


class PyCudaLayer(DeviceLayer):
    kind = "pycuda"

    def __init__(self, device: int = 0):
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.dev = cuda.Device(device)
        self.ctx = self.dev.retain_primary_context()
        self.ctx.push()
        self.stream = cuda.Stream()
        self._allocs: dict[int, object] = {}

    def alloc(self, nbytes):
        a = self.cuda.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr):
        a = self._allocs.pop(ptr, None)
        if a is not None:
            a.free()

    def pinned(self, shape, dtype):
        return self.cuda.pagelocked_empty(shape, dtype)

    def htod_async(self, dst, src):
        self.cuda.memcpy_htod_async(dst, src, self.stream)

    def dtoh_async(self, dst, src):
        self.cuda.memcpy_dtoh_async(dst, src, self.stream)

    def event(self):
        return self.cuda.Event()

    def record(self, ev):
        ev.record(self.stream)

    def elapsed_s(self, start, end):
        end.synchronize()
        return end.time_since(start) / 1e3

    def synchronize(self):
        self.stream.synchronize()

    def mem_info(self):
        free, total = self.cuda.mem_get_info()
        return int(free), int(total)

    @property
    def stream_handle(self):
        return self.stream.handle

    def device_info(self):
        return self.dev.name(), self.dev.compute_capability()

    def close(self):
        for p in list(self._allocs):
            self.free(p)
        self.ctx.pop()


class CudaPythonLayer(DeviceLayer):
    kind = "cuda-python"

    def __init__(self, device: int = 0):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.rt = cudart
        self._check(cudart.cudaSetDevice(device))
        self.device = device
        self.stream = self._check(cudart.cudaStreamCreate())
        self._pinned: dict[int, int] = {}  # id(array base) -> host pointer, freed on close
        self._allocs: set[int] = set()

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self.rt.cudaGetErrorName(err)[1]
            raise CompsrtError(f"CUDA call failed: {name.decode() if isinstance(name, bytes) else name}")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    def alloc(self, nbytes):
        ptr = int(self._check(self.rt.cudaMalloc(max(int(nbytes), 1))))
        self._allocs.add(ptr)
        return ptr

    def free(self, ptr):
        if ptr in self._allocs:
            self._allocs.discard(ptr)
            self._check(self.rt.cudaFree(ptr))

    def pinned(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = int(self._check(self.rt.cudaMallocHost(max(nbytes, 1))))
        import ctypes

        buf = (ctypes.c_byte * max(nbytes, 1)).from_address(ptr)
        arr = np.frombuffer(buf, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)
        self._pinned[ptr] = nbytes
        return arr

    def htod_async(self, dst, src):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, self.stream))

    def dtoh_async(self, dst, src):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, self.stream))

    def event(self):
        return self._check(self.rt.cudaEventCreate())

    def record(self, ev):
        self._check(self.rt.cudaEventRecord(ev, self.stream))

    def elapsed_s(self, start, end):
        self._check(self.rt.cudaEventSynchronize(end))
        return float(self._check(self.rt.cudaEventElapsedTime(start, end))) / 1e3

    def synchronize(self):
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    def mem_info(self):
        free, total = self._check(self.rt.cudaMemGetInfo())
        return int(free), int(total)

    @property
    def stream_handle(self):
        return int(self.stream)

    def device_info(self):
        prop = self._check(self.rt.cudaGetDeviceProperties(self.device))
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00"), (int(prop.major), int(prop.minor))

    def close(self):
        for p in list(self._allocs):
            self.free(p)
        for p in list(self._pinned):
            self._check(self.rt.cudaFreeHost(p))
        self._pinned.clear()
        self._check(self.rt.cudaStreamDestroy(self.stream))


def open_device(device: int = 0, prefer: str | None = None) -> DeviceLayer:
    """pycuda if importable (the design's choice), else cuda-python; a clear error if neither works."""
    order = [PyCudaLayer, CudaPythonLayer]
    if prefer == "cuda-python":
        order.reverse()
    errors = []
    for cls in order:
        try:
            return cls(device)
        except ImportError as exc:
            errors.append(f"{cls.kind}: {exc}")
        except CompsrtError as exc:
            errors.append(f"{cls.kind}: {exc}")
        except Exception as exc:  # driver errors from pycuda (no device, old driver)
            errors.append(f"{cls.kind}: {exc.__class__.__name__}: {exc}")
    raise CompsrtError("no usable CUDA device for the TensorRT backend (" + "; ".join(errors) +
                       "); install pycuda or cuda-python and check `nvidia-smi`")


def current_device_info() -> tuple[str, str] | None:
    """(name, 'major.minor') of CUDA device 0 without allocating a context when possible, else None."""
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            return p.name, f"{p.major}.{p.minor}"
    except Exception as exc:  # noqa: BLE001 - torch's CUDA errors; cuda-python below may still answer
        log.info("torch could not read CUDA device 0 (%s: %s); asking cuda-python", exc.__class__.__name__, exc)
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        err, n = cudart.cudaGetDeviceCount()
        if int(err) != 0 or n == 0:
            return None
        err, prop = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return None
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00"), f"{prop.major}.{prop.minor}"
    except Exception as exc:  # noqa: BLE001 - no CUDA runtime or driver: no device to describe
        log.info("no CUDA device info (%s: %s)", exc.__class__.__name__, exc)
        return None
