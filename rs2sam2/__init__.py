"""rs2sam2: referring remote sensing image segmentation with RS2-SAM2."""

from .config import RS2SAM2Config

__version__ = "0.1.0"

__all__ = ["RS2SAM2", "RS2SAM2Config", "RS2SAM2Output", "RS2SAM2Processor", "RS2SAM2Predictor"]

# Imported on first use: the model pulls in torch and sam2, the processor and predictor transformers / PIL,
# and ``import rs2sam2.cli`` (the command, its --help) needs none of them.
_LAZY = {
    "RS2SAM2": ".weights.pretrained",
    "RS2SAM2Output": ".modeling",
    "RS2SAM2Processor": ".processing",
    "RS2SAM2Predictor": ".predictor",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'rs2sam2' has no attribute {name!r}")
