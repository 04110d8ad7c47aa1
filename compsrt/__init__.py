"""compsrt: compress SwinIR-light with CompSRT and deploy it with TensorRT."""

__version__ = "0.1.0"
