"""Typed configuration of RS2-SAM2, one dataclass per block, composed into :class:`RS2SAM2Config`.

Every number the official code (``rongfu-dsb/RS2-SAM2``) hard-codes — union encoder, SAM2 part, fusion
layers, prompt generator, inference — is a named field here. Presets are
plain data (:data:`PRESETS`), reachable with :meth:`RS2SAM2Config.from_preset`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class UnionEncoderConfig:
    """① BEiT-3 multiway transformer ("union encoder"), torchscale ``EncoderConfig`` semantics."""

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    vocab_size: int = 64010
    embed_dim: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    ffn_dim: int = 4096
    max_source_positions: int = 1024  # rows of the text position table
    position_offset: int = 2  # fairseq convention: positions start at index 2
    layernorm_eps: float = 1e-5
    init_std: float = 0.02  # BEiT3Wrapper trunc-normal init of Linear weights

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2


@dataclass
class HieraConfig:
    """② SAM2 Hiera trunk, arguments of ``sam2.modeling.backbones.hieradet.Hiera``."""

    embed_dim: int = 144
    num_heads: int = 2
    stages: tuple[int, ...] = (2, 6, 36, 4)
    global_att_blocks: tuple[int, ...] = (23, 33, 43)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    window_spec: tuple[int, ...] = (8, 4, 16, 8)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    drop_path_rate: float = 0.0

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages)))

    def block_dims(self) -> list[int]:
        """Output channel count ``dim_out`` of every block, in order."""
        return [d for d, n in zip(self.stage_dims, self.stages) for _ in range(n)]


@dataclass
class NeckConfig:
    """② SAM2 FPN neck, arguments of ``sam2.modeling.backbones.image_encoder.FpnNeck``."""

    d_model: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_model: str = "nearest"
    scalp: int = 1  # drop the lowest-resolution FPN level (it still feeds the top-down path)


@dataclass
class FusionConfig:
    """② BHFM layer (BL) inside every Hiera block (paper Sec. 3.2, Bidirectional Hierarchical Fusion)."""

    ratio: float = 0.25  # adapter hidden size h = int(ratio * d)
    num_heads: int = 4  # heads of both cross-attentions
    text_weight: float = 0.2  # alpha_t: T <- (1 - a) T + a text_out(t)
    adapter_scale: float = 0.5  # alpha_i: weight of the parallel MLP adapter


@dataclass
class PromptGeneratorConfig:
    """③ Mask prompt generator (MPG) and the sparse token MLP (paper Sec. 3.3, Mask Prompt Generator)."""

    num_heads: int = 8  # class-token -> patch cross-attention ("vmtoken")
    antialias: bool = True  # the official upsampling of the pseudo-mask uses antialias=True


@dataclass
class DecoderConfig:
    """④ SAM2 prompt encoder + mask decoder, plus the post-encoding text fusion (BC, paper Sec. 3.2)."""

    transformer_depth: int = 2
    transformer_num_heads: int = 8
    transformer_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    text_fusion_heads: int = 8
    use_high_res_features: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    iou_prediction_use_sigmoid: bool = True
    use_multimask_token_for_obj_ptr: bool = True


@dataclass
class TokenizerConfig:
    """Text side of the processor: XLM-R sentencepiece ids with the official pad = unk = 3 rule."""

    bos_token_id: int = 0
    eos_token_id: int = 2
    pad_token_id: int = 3  # official: pad_token = unk_token, attention mask = ids != 3
    # A real tokenizer has at least this many entries; offline loading can silently give 5.
    min_vocab_size: int = 64000


@dataclass
class ProcessorConfig:
    """Image side of the processor (the official resize and normalisation of both image inputs)."""

    sam_mean: tuple[float, float, float] = IMAGENET_MEAN
    sam_std: tuple[float, float, float] = IMAGENET_STD
    union_mean: tuple[float, float, float] = IMAGENET_MEAN
    union_std: tuple[float, float, float] = IMAGENET_STD
    resample: str = "bilinear"


@dataclass
class RS2SAM2Config:
    """The whole model. ``image_size`` is the SAM2 input side S (1024 in the official model)."""

    image_size: int = 1024
    text_dim: int = 256  # width of the projected text tokens = SAM2 prompt/decoder width
    mask_threshold: float = 0.5  # foreground iff upsampled logit > 0.5 (official argmax of [1-x, x])
    union_encoder: UnionEncoderConfig = field(default_factory=UnionEncoderConfig)
    hiera: HieraConfig = field(default_factory=HieraConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    prompt_generator: PromptGeneratorConfig = field(default_factory=PromptGeneratorConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig)
    # Provenance: which base checkpoints the frozen SAM2 weights come from (used by compact packages).
    base_model: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.neck.d_model != self.text_dim:
            raise ValueError(
                f"neck.d_model ({self.neck.d_model}) must equal text_dim ({self.text_dim}): "
                "the SAM2 decoder consumes both"
            )
        patch_grid = self.image_size // 4  # Hiera patch embed has stride 4
        if patch_grid % self.hiera.window_spec[0]:
            raise ValueError(
                f"image_size / 4 = {patch_grid} must be divisible by hiera.window_spec[0] = "
                f"{self.hiera.window_spec[0]}"
            )

    @property
    def embedding_size(self) -> int:
        """Side of the SAM2 image embedding (S / 16)."""
        return self.image_size // 16

    @property
    def mask_input_size(self) -> int:
        """Side of SAM2's dense mask prompt and of the low-resolution logits (S / 4)."""
        return self.image_size // 4

    # ----------------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RS2SAM2Config:
        data = dict(data)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data.pop(f.name)
            sub = _SUBCONFIGS.get(f.name)
            kwargs[f.name] = _build(sub, value) if sub is not None else value
        # Hub metadata written next to our fields (e.g. by huggingface_hub) is ignored.
        return cls(**kwargs)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> RS2SAM2Config:
        p = Path(path_or_text)
        text = p.read_text() if p.suffix == ".json" or p.exists() else str(path_or_text)
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_preset(cls, name: str) -> RS2SAM2Config:
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
        return cls.from_dict(copy.deepcopy(PRESETS[name]))


_SUBCONFIGS: dict[str, type] = {
    "union_encoder": UnionEncoderConfig,
    "hiera": HieraConfig,
    "neck": NeckConfig,
    "fusion": FusionConfig,
    "prompt_generator": PromptGeneratorConfig,
    "decoder": DecoderConfig,
    "tokenizer": TokenizerConfig,
    "processor": ProcessorConfig,
}


def _build(cls: type, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(value) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for k, v in value.items():
        # JSON turns tuples into lists; restore tuples so configs compare equal after a round trip.
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


# Ranges every config value must fall in (inclusive), as data: a config.json is input, and one saying
# ``image_size: 16384`` or ``num_layers: 10000`` would make every request (or the load itself) take
# minutes and gigabytes. Generous around the official model (image 1024, widths ≤ 4096, 24 layers).
MAX_IMAGE_SIZE_ENV = "RS2SAM2_MAX_IMAGE_SIZE"
DEFAULT_MAX_IMAGE_SIZE = 4096
CONFIG_RANGES: dict[str, tuple[float, float]] = {
    "image_size": (16, DEFAULT_MAX_IMAGE_SIZE),
    "text_dim": (1, 8192),
    "mask_threshold": (-1e4, 1e4),
    "union_encoder.img_size": (16, 1024),
    "union_encoder.patch_size": (1, 64),
    "union_encoder.in_chans": (1, 16),
    "union_encoder.vocab_size": (1, 1_000_000),
    "union_encoder.embed_dim": (1, 8192),
    "union_encoder.num_layers": (1, 128),
    "union_encoder.num_heads": (1, 256),
    "union_encoder.ffn_dim": (1, 65536),
    "union_encoder.max_source_positions": (3, 65536),
    "union_encoder.position_offset": (0, 16),
    "hiera.embed_dim": (1, 4096),
    "hiera.num_heads": (1, 256),
    "hiera.stages": (1, 128),  # every stage's depth
    "hiera.global_att_blocks": (0, 512),
    "hiera.window_pos_embed_bkg_spatial_size": (1, 256),
    "hiera.window_spec": (1, 1024),
    "hiera.q_pool": (0, 8),
    "hiera.q_stride": (1, 8),
    "hiera.dim_mul": (0.125, 8.0),
    "hiera.head_mul": (0.125, 8.0),
    "hiera.drop_path_rate": (0.0, 1.0),
    "neck.d_model": (1, 8192),
    "neck.fpn_top_down_levels": (0, 8),
    "neck.scalp": (0, 8),
    "fusion.ratio": (0.0, 16.0),
    "fusion.num_heads": (1, 256),
    "prompt_generator.num_heads": (1, 256),
    "decoder.transformer_depth": (1, 64),
    "decoder.transformer_num_heads": (1, 256),
    "decoder.transformer_mlp_dim": (1, 65536),
    "decoder.num_multimask_outputs": (0, 16),
    "decoder.iou_head_depth": (1, 64),
    "decoder.iou_head_hidden_dim": (1, 65536),
    "decoder.mask_in_chans": (1, 4096),
    "decoder.text_fusion_heads": (1, 256),
}
_MAX_SEQUENCE = 16  # entries of a tuple field (stages, window_spec, …)


def max_image_size() -> int:
    """The largest ``image_size`` a config may have: ``$RS2SAM2_MAX_IMAGE_SIZE``, else 4096."""
    import os

    text = os.environ.get(MAX_IMAGE_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_SIZE
    if not text.isdigit():
        raise ValueError(f"{MAX_IMAGE_SIZE_ENV}={text!r} is not a whole number")
    return int(text)


def check_ranges(config: RS2SAM2Config) -> None:
    """Raise ``ValueError`` naming the first field of :data:`CONFIG_RANGES` outside its range (or of the
    wrong type); ``image_size`` is capped by :func:`max_image_size`."""
    for name, (low, high) in CONFIG_RANGES.items():
        if name == "image_size":
            high = max_image_size()
        obj: Any = config
        for part in name.split("."):
            obj = getattr(obj, part)
        values = obj if isinstance(obj, (tuple, list)) else (obj,)
        if isinstance(obj, (tuple, list)) and len(obj) > _MAX_SEQUENCE:
            raise ValueError(f"config {name} has {len(obj)} entries; at most {_MAX_SEQUENCE} are allowed")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"config {name} must be a number, got {v!r}")
            if isinstance(low, int) and isinstance(high, int) and not isinstance(v, int):
                raise ValueError(f"config {name} must be a whole number, got {v!r}")
            if not low <= v <= high:
                hint = f" (raise it with {MAX_IMAGE_SIZE_ENV})" if name == "image_size" else ""
                raise ValueError(f"config {name} = {v!r} is outside the allowed range [{low}, {high}]{hint}")


# Presets are data. "official" = every number of the released RS2-SAM2 model (the dataclass defaults).
PRESETS: dict[str, dict[str, Any]] = {
    "official": {},
    # Same architecture, small enough for tests and for the bundled default model (CPU training).
    "tiny": {
        "image_size": 256,
        "text_dim": 64,
        "union_encoder": {
            "vocab_size": 64010,
            "embed_dim": 128,
            "num_layers": 4,
            "num_heads": 4,
            "ffn_dim": 512,
        },
        "hiera": {
            "embed_dim": 32,
            "num_heads": 1,
            "stages": (1, 2, 3, 1),
            "global_att_blocks": (5,),
            "window_pos_embed_bkg_spatial_size": (7, 7),
            "window_spec": (8, 4, 4, 2),
        },
        "neck": {"d_model": 64},
        "prompt_generator": {"num_heads": 4},
        "decoder": {
            "transformer_num_heads": 4,
            "transformer_mlp_dim": 256,
            "iou_head_hidden_dim": 64,
            "mask_in_chans": 16,
            "text_fusion_heads": 4,
        },
        "tokenizer": {"min_vocab_size": 100},
    },
}
# ``tiny`` with a union encoder twice as wide (256-d, 8 heads, FFN 1024): the part that limits a model trained
# from random weights. From scratch its pseudo-mask learned to find the target faster than tiny's at equal
# samples in benchmarks/grounding_probe.py (docs/training_probes.md); each sample costs about 2.7x tiny's in
# the union encoder.
PRESETS["small"] = copy.deepcopy(PRESETS["tiny"])
PRESETS["small"]["union_encoder"].update({"embed_dim": 256, "num_heads": 8, "ffn_dim": 1024})
