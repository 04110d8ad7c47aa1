"""Tensors between numpy and Triton's python backend stub, for the repository's model files.

Through DLPack: the stub's numpy bridge (``pb_utils.Tensor(name, ndarray)``, ``as_numpy()``) misreads
numpy >= 2 arrays (zero byte sizes, wrong values): its pybind11 predates the numpy 2 descriptor layout.
Imported only inside the stub, where ``triton_python_backend_utils`` exists.
"""

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub


def to_triton(name: str, array: np.ndarray):
    """An output or BLS input tensor."""
    return pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(array))


def to_numpy(tensor) -> np.ndarray:
    """A request or BLS output tensor as numpy (copied: the buffer is the stub's)."""
    return np.from_dlpack(tensor).copy()
