"""Tensors between numpy and Triton's python backend stub, for the repository's model files.

Through DLPack: the stub's numpy bridge (``pb_utils.Tensor(name, ndarray)``, ``as_numpy()``) misreads
numpy >= 2 arrays (zero byte sizes, wrong values): its pybind11 predates the numpy 2 descriptor layout.

The stub marks a capsule it consumed ``"used_dlpack"``, not the DLPack spec's ``"used_dltensor"``
(python_backend ``PbTensor::FromDLPackCapsule``), so numpy's capsule destructor takes it for an
unconsumed one, fails to read it and prints a ``PyCapsule_GetPointer called with incorrect name``
traceback to the server log for every tensor handed over (the memory itself is released by the stub).
:func:`to_triton` renames the consumed capsule as the spec says, so numpy's destructor leaves it alone.
Imported only inside the stub, where ``triton_python_backend_utils`` exists.
"""

import ctypes

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

STUB_CONSUMED = b"used_dlpack"  # the name the stub gives a capsule it took over
SPEC_CONSUMED = b"used_dltensor"  # the name producers (numpy) check for; module-level: capsule names must outlive them
_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_is_valid.argtypes, _is_valid.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_int
_set_name = ctypes.pythonapi.PyCapsule_SetName
_set_name.argtypes, _set_name.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_int


def to_triton(name: str, array: np.ndarray):
    """An output or BLS input tensor (the stub keeps ``array`` alive until it is done with it)."""
    capsule = np.ascontiguousarray(array).__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    if _is_valid(capsule, STUB_CONSUMED):
        _set_name(capsule, SPEC_CONSUMED)
    return tensor


def to_numpy(tensor) -> np.ndarray:
    """A request or BLS output tensor as numpy (copied: the buffer is the stub's)."""
    return np.from_dlpack(tensor).copy()
