"""The public model class: :class:`RS2SAM2` = the math of :mod:`rs2sam2.modeling` + the Hub integration of
:mod:`rs2sam2.weights`.

Why two classes: ``modeling/`` is the paper's figure and imports nothing of ours but the config, so it
cannot know how model folders are found, read or written; :mod:`rs2sam2.weights.hub` does that and takes
the model class as an argument, so it never imports ``modeling`` either. The two meet here, one layer
above both: :class:`PretrainedMixin` carries ``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` /
``generate_model_card`` (forwarding to :mod:`rs2sam2.weights.hub` and :mod:`rs2sam2.weights.model_card`)
and :class:`RS2SAM2` combines it with :class:`~rs2sam2.modeling.RS2SAM2Model`. Imports only point down:
``pretrained`` → ``hub`` → (``compact``, ``convert``, ``model_card``, ``state_dict``) → ``sources``, and
``pretrained`` / ``convert`` (the expected shapes of a conversion) → ``modeling`` → ``config``; nothing in
``modeling`` imports ``weights``. ``from rs2sam2 import RS2SAM2``
is this class.

The mixin derives from huggingface_hub's ``PyTorchModelHubMixin``, so the Hub's own machinery
(``ModelHubMixin.save_pretrained`` / ``from_pretrained``) reaches the same code through the
``_save_pretrained`` / ``_from_pretrained`` hooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import PyTorchModelHubMixin

from ..modeling import RS2SAM2Model
from .hub import load_pretrained, push_to_hub, save_pretrained
from .model_card import generate_model_card


class PretrainedMixin(PyTorchModelHubMixin):
    """``from_pretrained``, ``save_pretrained``, ``push_to_hub`` and the model card for a model class whose
    instances have ``config`` (an :class:`~rs2sam2.RS2SAM2Config`), ``state_dict()`` and ``dtype``."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):
        """Load a model folder or Hub repo: ours, or the official release (converted on the fly).

        Strict: missing/unexpected keys, shape mismatches and NaN/Inf weights raise. Keyword arguments
        (``subfolder``, ``revision``, ``cache_dir``, ``local_files_only``, ``token``, ``config``,
        ``map_location``, ``dtype``, ``strict``) are those of :func:`rs2sam2.weights.hub.load_pretrained`.
        """
        return load_pretrained(cls, pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, **kwargs: Any):
        # The mixin's loading hook; ``from_pretrained`` above does not go through it.
        kwargs.pop("config", None)  # the mixin passes config.json's raw dict; the folder is re-read
        return load_pretrained(cls, model_id, **kwargs)

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Path:  # type: ignore[override]
        """Write ``config.json``, ``model.safetensors``, the tokenizer (``processor=`` / ``tokenizer=``) and
        a model card. Options (``dtype``, ``compact``, ``card``):
        :func:`rs2sam2.weights.hub.save_pretrained`."""
        return save_pretrained(self, save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        # The mixin's saving hook, for callers that use the mixin's own machinery.
        save_pretrained(self, save_directory)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:  # type: ignore[override]
        """Save (as :meth:`save_pretrained`) and upload to a Hub model repo; returns the commit URL.
        Options are those of :func:`rs2sam2.weights.hub.push_to_hub`."""
        return push_to_hub(self, repo_id, **kwargs)

    def generate_model_card(self, *args: Any, **kwargs: Any):
        """The model card :meth:`save_pretrained` writes (see
        :func:`rs2sam2.weights.model_card.generate_model_card`)."""
        n = sum(p.numel() for p in self.parameters())
        return generate_model_card(self.config, *args, num_parameters=n, **kwargs)


class RS2SAM2(
    RS2SAM2Model,
    PretrainedMixin,
    library_name="rs2sam2",
    license="apache-2.0",
    pipeline_tag="image-segmentation",
    repo_url="https://github.com/rongfu-dsb/RS2-SAM2",
    paper_url="https://arxiv.org/abs/2503.07266",
    tags=["rs2sam2", "referring-image-segmentation", "remote-sensing", "sam2", "beit-3"],
):
    """RS2-SAM2 (paper Fig. 2; the model itself is :class:`~rs2sam2.modeling.RS2SAM2Model`) with
    ``from_pretrained``, ``save_pretrained``, ``push_to_hub`` and ``generate_model_card``."""
