"""rs2sam2: referring remote sensing image segmentation with RS2-SAM2."""

from .config import RS2SAM2Config
from .modeling import RS2SAM2, RS2SAM2Output

__version__ = "0.1.0"

__all__ = ["RS2SAM2", "RS2SAM2Config", "RS2SAM2Output", "RS2SAM2Processor", "RS2SAM2Predictor"]


def __getattr__(name: str):
    # The processor and predictor pull in transformers / PIL: import them on first use.
    if name == "RS2SAM2Processor":
        from .processing import RS2SAM2Processor

        return RS2SAM2Processor
    if name == "RS2SAM2Predictor":
        from .predictor import RS2SAM2Predictor

        return RS2SAM2Predictor
    raise AttributeError(f"module 'rs2sam2' has no attribute {name!r}")
