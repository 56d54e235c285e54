"""The RS2-SAM2 model: ① union encoder, ② fused image encoder, ③ prompt generator, ④ SAM2 decoder."""

from .rs2sam2 import RS2SAM2Model, RS2SAM2Output

__all__ = ["RS2SAM2Model", "RS2SAM2Output"]
