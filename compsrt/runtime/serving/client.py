"""The ``tritonclient`` side: whole images to the ``compsrt_upscale`` model over HTTP or gRPC."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import CompsrtError
from .repo import IMAGE_MODEL


class RemoteUpscaler:
    """``upscale(rgb)`` through a Triton server at ``url`` (``http://host:port`` or ``grpc://host:port``).

    One client per thread: tritonclient's HTTP client is not meant to be shared between threads.
    """

    def __init__(self, url: str, model: str = IMAGE_MODEL, timeout: float = 120.0):
        self.url, self.model = url, model
        scheme, _, addr = url.partition("://")
        if not addr:
            scheme, addr = "http", url
        try:
            if scheme == "grpc":
                import tritonclient.grpc as tc
            elif scheme in ("http", "https"):
                import tritonclient.http as tc
            else:
                raise CompsrtError(f"--server must start with http:// or grpc://, got {url}")
        except ImportError:
            raise CompsrtError("the Triton client is not installed: pip install 'tritonclient[http,grpc]==2.73.0'") from None
        from tritonclient.utils import InferenceServerException

        self.tc, self.scheme, self.error = tc, scheme, InferenceServerException
        kw = {"network_timeout": timeout, "connection_timeout": timeout} if scheme != "grpc" else {}
        try:
            self.client = tc.InferenceServerClient(addr, ssl=scheme == "https", **kw) if scheme != "grpc" \
                else tc.InferenceServerClient(addr)
            ready = self.client.is_model_ready(model)
        except Exception as exc:  # connection errors come in several types
            raise CompsrtError(f"no Triton server answers at {url} ({exc.__class__.__name__}: {exc}); "
                               "start one with `compsrt serve`") from None
        if not ready:
            raise CompsrtError(f"the server at {url} has no ready model {model}; serve a repository written by "
                               "`compsrt triton-repo`")
        self.timeout = timeout

    def infer_raw(self, array: np.ndarray, datatype: str = "UINT8"):
        """Send ``array`` as the IMAGE input as it is (tests use this for malformed requests)."""
        tc = self.tc
        inp = tc.InferInput("IMAGE", list(array.shape), datatype)
        inp.set_data_from_numpy(array)
        out = tc.InferRequestedOutput("IMAGE")
        kw = {"client_timeout": self.timeout} if self.scheme == "grpc" else {}
        return self.client.infer(self.model, [inp], outputs=[out], **kw).as_numpy("IMAGE")

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise CompsrtError(f"the server takes uint8 RGB (H, W, 3), got {rgb.dtype} {rgb.shape}; "
                               "16-bit images are upscaled in-process only")
        try:
            return self.infer_raw(np.ascontiguousarray(rgb))
        except self.error as exc:
            raise CompsrtError(f"the server refused the request: {exc.message()}") from None

    def close(self) -> None:
        self.client.close()


def upscale_files(url: str, pairs, encode=None, max_pixels: int | None = None, workers: int | None = None,
                  stop=None):
    """Yield a :class:`~compsrt.runtime.pipelined.FileResult` per (src, dst), in order; ``workers``
    concurrent requests (one client each). Once ``stop`` (a :class:`threading.Event`) is set no new request
    starts, and only the results of the requests already sent are yielded (their files are written)."""
    import threading
    import time
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from ...encoding import load_image_any, save_image_any
    from ..pipelined import FileResult
    from ..upscaler import upscale_alpha

    RemoteUpscaler(url).close()  # fail fast, once, when nobody answers
    local = threading.local()
    stop = stop or threading.Event()

    def one(src, dst):
        t0 = time.perf_counter()
        res = FileResult(src, dst, False)
        if stop.is_set():
            res.error, res.interrupted = f"{src}: interrupted", True
            return res
        try:
            if not hasattr(local, "client"):
                local.client = RemoteUpscaler(url)
            img = load_image_any(src, limit=max_pixels)
            out = local.client.upscale(img.rgb)
            scale = out.shape[0] // img.rgb.shape[0]
            save_image_any(dst, out, upscale_alpha(img.alpha, scale), encode)
            h, w = img.rgb.shape[:2]
            res.ok, res.in_size, res.out_size, res.mode = True, (w, h), (out.shape[1], out.shape[0]), img.mode
        except CompsrtError as exc:
            res.error = str(exc)
        res.seconds = time.perf_counter() - t0
        return res

    n = workers or 4
    with ThreadPoolExecutor(n) as pool:
        window: deque = deque()
        for s, d in pairs:
            if stop.is_set():
                break
            window.append(pool.submit(one, Path(s), Path(d)))
            while len(window) >= 2 * n:  # bounded: a stop leaves at most this many requests to finish
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
