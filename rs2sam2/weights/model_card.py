"""The model card (``README.md``) of a model folder: YAML metadata for the Hub and a body saying what the
model is, how to use it, how it scores and how to cite the paper."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import RS2SAM2Config

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

PAPER_ARXIV = "2503.07266"
OFFICIAL_CODE_URL = "https://github.com/rongfu-dsb/RS2-SAM2"
OFFICIAL_HUB_REPO = "ReeF2025/RS2-SAM2"


@dataclass
class Evaluation:
    """Results on one dataset split, in % (as the paper reports them), for the model card."""

    dataset: str  # e.g. "RRSIS-D"
    split: str  # e.g. "test"
    metrics: dict[str, float]  # e.g. {"mIoU": 66.72, "oIoU": 78.99, "Pr@0.5": 77.56}
    dataset_id: str | None = None  # Hub dataset id, if the dataset is on the Hub
    source: str = "measured with rs2sam2.evaluate"
    source_url: str | None = None  # e.g. the paper, for reported numbers


@dataclass
class ModelCardInfo:
    """What the generated ``README.md`` says beyond what the config knows."""

    model_name: str = "RS2-SAM2"
    license: str = "apache-2.0"
    description: str | None = None
    repo_id: str | None = None  # used in the usage snippet
    datasets: list[str] = field(default_factory=list)  # Hub dataset ids
    base_model: list[str] = field(default_factory=list)  # default: config.base_model["repo_id"]
    evaluations: list[Evaluation] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


DEFAULT_TAGS = (
    "rs2sam2",
    "referring-image-segmentation",
    "remote-sensing",
    "sam2",
    "beit-3",
    "pytorch_model_hub_mixin",
    "model_hub_mixin",
)

_CITATION = """@inproceedings{rong2026rs2sam2,
  title     = {RS2-SAM2: Customized SAM2 for Referring Remote Sensing Image Segmentation},
  author    = {Rong, Fu and Lan, Meng and Zhang, Qian and Zhang, Lefei},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2026},
  note      = {arXiv:2503.07266}
}"""


def generate_model_card(
    config: RS2SAM2Config,
    info: ModelCardInfo | None = None,
    *,
    num_parameters: int | None = None,
    package: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The ``README.md`` of a model folder: YAML metadata (``library_name: rs2sam2``, license, tags,
    datasets, ``base_model``, ``model-index`` when evaluations are given) and a body with what the model is,
    how to use it, the evaluation table and the citation."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    info = info or ModelCardInfo()
    base_models = list(info.base_model) or (
        [config.base_model["repo_id"]] if config.base_model.get("repo_id") else []
    )
    eval_results = [
        EvalResult(
            task_type="image-segmentation",
            task_name="Referring remote sensing image segmentation",
            dataset_type=ev.dataset_id or ev.dataset.lower().replace(" ", "-"),
            dataset_name=ev.dataset,
            dataset_split=ev.split,
            metric_type=name.lower().replace("@", "-at-"),
            metric_name=name,
            metric_value=float(value),
            source_name=ev.source if ev.source_url else None,  # the Hub wants both or neither
            source_url=ev.source_url,
        )
        for ev in info.evaluations
        for name, value in ev.metrics.items()
    ]
    data = ModelCardData(
        library_name="rs2sam2",
        license=info.license,
        tags=sorted(set(DEFAULT_TAGS) | set(info.tags)),
        datasets=list(info.datasets) or None,
        base_model=base_models or None,
        pipeline_tag="image-segmentation",
        model_name=info.model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    card = ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n{_card_body(config, info, num_parameters, package or {})}"
    )
    return card


def _card_body(
    config: RS2SAM2Config, info: ModelCardInfo, num_parameters: int | None, package: Mapping[str, Any]
) -> str:
    u, h = config.union_encoder, config.hiera
    repo = info.repo_id or "path/to/this/folder"
    description = info.description or (
        "Referring remote sensing image segmentation: an aerial or satellite image and a sentence in, the "
        "pixel mask of the object the sentence refers to out."
    )
    params = f"{num_parameters / 1e6:.1f} M parameters; " if num_parameters else ""
    dtype = package.get("dtype", "float32")
    weights = f"weights stored in {dtype}"
    if package.get("omitted_prefixes"):
        base = config.base_model
        weights += (
            f"; compact package: the frozen SAM2 Hiera trunk and FPN neck are not stored here but fetched "
            f"from `{base.get('repo_id')}` (`{base.get('filename')}`, sha256 of the tensors verified)"
        )
    lines = [
        f"# {info.model_name}",
        "",
        description,
        "",
        f"This is an [RS2-SAM2](https://arxiv.org/abs/{PAPER_ARXIV}) model (AAAI 2026) for the "
        "`rs2sam2` library, a reimplementation of the "
        f"[official code]({OFFICIAL_CODE_URL}). A BEiT-3 union encoder reads image and text together; "
        "bidirectional fusion layers inside every block of SAM2's Hiera image encoder align the image "
        "features with the text; a mask prompt generator turns the multimodal class token into a pseudo-mask "
        "that SAM2's decoder takes as its dense prompt.",
        "",
        "## Model",
        "",
        f"* Union encoder: BEiT-3, {u.num_layers} layers, width {u.embed_dim}, {u.img_size}² image input, "
        f"text vocabulary {u.vocab_size}.",
        f"* Image encoder: SAM2 Hiera (embed dim {h.embed_dim}, stages {list(h.stages)}) with a fusion layer "
        f"per block; input {config.image_size}×{config.image_size}.",
        f"* {params}{weights}.",
        "",
        "## Usage",
        "",
        "```python",
        "from rs2sam2 import RS2SAM2Predictor",
        "",
        f'predictor = RS2SAM2Predictor.from_pretrained("{repo}")',
        'prediction = predictor.predict("scene.png", "the white storage tank closest to the road")',
        "prediction.mask  # (H, W) bool array at the image's native size",
        "```",
        "",
        "## Evaluation",
        "",
    ]
    lines += _evaluation_table(info.evaluations)
    lines += ["", "## Citation", "", "```bibtex", _CITATION, "```", ""]
    return "\n".join(lines)


def _evaluation_table(evaluations: list[Evaluation]) -> list[str]:
    if not evaluations:
        return ["No evaluation results are recorded for this package."]
    names: list[str] = []
    for ev in evaluations:
        names += [n for n in ev.metrics if n not in names]
    rows = [
        "| Dataset | Split | " + " | ".join(names) + " | Source |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for ev in evaluations:
        cells = [f"{ev.metrics[n]:.2f}" if n in ev.metrics else "–" for n in names]
        source = f"[{ev.source}]({ev.source_url})" if ev.source_url else ev.source
        rows.append(f"| {ev.dataset} | {ev.split} | " + " | ".join(cells) + f" | {source} |")
    return rows
