"""Where the union encoder's patch positions start from (``TrainConfig.position_init``; not part of RS2-SAM2).

BEiT-3 keeps a learned position vector per patch, initialised at random (``nn.Embedding``'s N(0, 1)). The
paper's model starts from pretrained BEiT-3 weights, whose table has learned the image's geometry. Trained
from random weights on a few thousand sentences it does not: in the bundled model after stage 2 neither the
row nor the column of a patch could be read linearly from its vector (held-out R² below 0), and its
pseudo-mask picked the referred object among those of the named category about as often as chance on the
position expressions ("the uppermost tank"). Writing fixed 2-D sine-cosine codes of (row, column) into
the table (the scheme of MAE, He et al. 2022: a quarter of the channels each for sin/cos of the row and of
the column, frequencies ``1 / 10000^(k / (C/4))``) gives the encoder the geometry from the first step; the
table stays trainable.

Measured (``docs/training_probes.md``, union encoder + prompt generator trained alone from random weights):
the codes help early (val peak on the target 20.5 against 17.3 % after 46,496 samples) and the table
keeps its geometry, but after 120,000 samples the val peak rate is at the level of a random pick among
the named category's objects either way: geometry alone does not teach the `tiny` encoder positions.
"""

from __future__ import annotations

import torch

from ..modeling.union_encoder import UnionEncoder

#: ``"model"``: the table as built or loaded; ``"sincos"``: replaced by the codes; ``"add-sincos"``: the
#: codes added to it (for a trained model, which keeps what it learned).
POSITION_INITS = ("model", "sincos", "add-sincos")


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid², dim) codes of the patches in row-major order: ``[sin(r ω), cos(r ω), sin(c ω), cos(c ω)]``
    with ``ω_k = 1 / 10000^(k / (dim/4))``, k = 0 … dim/4 − 1 (``dim`` a multiple of 4)."""
    if dim % 4:
        raise ValueError(f"2-D sine-cosine positions need a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    steps = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(steps, steps, indexing="ij")
    codes = []
    for coord in (rows.flatten(), cols.flatten()):
        angle = coord[:, None] * omega[None]
        codes += [angle.sin(), angle.cos()]
    return torch.cat(codes, dim=1).float()


@torch.no_grad()
def init_patch_positions(union_encoder: UnionEncoder, kind: str) -> None:
    """Apply ``kind`` (:data:`POSITION_INITS`) to the patch rows of the vision position table. The class
    token's row, the fairseq offset rows and the text table are left as they are."""
    if kind not in POSITION_INITS:
        raise ValueError(f"position_init must be one of {POSITION_INITS}, got {kind!r}")
    if kind == "model":
        return
    cfg = union_encoder.config
    table = union_encoder.beit3.encoder.embed_positions.A.weight
    n = cfg.grid_size**2
    first = cfg.position_offset + 1  # after the offset rows and the class token's row
    codes = sincos_2d(cfg.grid_size, cfg.embed_dim).to(table)
    table[first : first + n] = table[first : first + n] + codes if kind == "add-sincos" else codes
