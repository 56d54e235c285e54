"""Shared by the weights tests: official-format model folders made on the fly, a test-made Hugging Face cache
(offline mode on), and SAM2 base checkpoints matching a model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rs2sam2 import RS2SAM2
from rs2sam2.weights.convert import SAM2_TO_OURS, official_key, rename_key

# The official config.json written by merge_lora_weights_and_save_hf_model.py (EvfConfig, transformers 4.x).
OFFICIAL_CONFIG = {
    "architectures": ["EvfSamModel"],
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_size": 1024,
    "mm_extractor_scale": "large",
    "model_type": "evf",
    "out_dim": 256,
    "pad_token_id": 3,
    "sam_scale": "huge",
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "transformers_version": "4.41.2",
}


def official_state_dict(model: RS2SAM2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random checkpoint in the official format for ``model``'s architecture: the table inverted on our
    keys, plus one small tensor for every documented unused module. Values ~ N(0, 0.02²) keep a forward
    pass finite."""
    g = torch.Generator().manual_seed(seed)
    sd = {official_key(k): 0.02 * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items()}
    sd.update(
        {
            "visual_model.memory_attention.layers.0.self_attn.q_proj.weight": torch.randn(4, 4, generator=g),
            "visual_model.memory_encoder.fuser.layers.0.gamma": torch.randn(4, generator=g),
            "visual_model.obj_ptr_proj.layers.0.weight": torch.randn(4, 4, generator=g),
            "visual_model.mask_downsample.weight": torch.randn(1, 1, 4, 4, generator=g),
            "visual_model.maskmem_tpos_enc": torch.randn(7, 1, 1, 4, generator=g),
            "visual_model.no_mem_pos_enc": torch.randn(1, 1, 4, generator=g),
            "visual_model.no_obj_ptr": torch.randn(1, 4, generator=g),
            "meo_linear.weight": torch.randn(4, 8, generator=g),
            "meo_linear.bias": torch.randn(4, generator=g),
        }
    )
    return sd


def write_official_folder(
    folder: Path,
    state: dict[str, torch.Tensor],
    *,
    fmt: str = "safetensors",
    prefix: str = "",
    config: bool = True,
    tokenizer: bool = True,
) -> Path:
    """The layout of a released model folder: config.json, weights, tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {prefix + k: v.contiguous() for k, v in state.items()}
    if fmt == "safetensors":
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    if config:
        (folder / "config.json").write_text(json.dumps(OFFICIAL_CONFIG, indent=2))
    if tokenizer:
        from rs2sam2.testing import make_test_tokenizer

        make_test_tokenizer(folder, vocab_size=120)
    return folder


BASE_REPO = "test-org/sam2-tiny-base"
BASE_FILE = "sam2_tiny_base.pt"


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def put_in_cache(cache: Path, repo_id: str, files: dict[str, Path | bytes]) -> Path:
    """Lay files out as huggingface_hub's cache does (refs/main → snapshots/<commit>/…)."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            shutil.copyfile(content, target)
    return snapshot


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF cache, offline mode on (as the environment variables and as huggingface_hub sees them)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def folder_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


def sam2_base_checkpoint(model: RS2SAM2) -> dict[str, torch.Tensor]:
    """The SAM2-format checkpoint whose SAM2 parts equal ``model``'s (plus a memory-module key)."""
    state = {}
    for key, value in model.state_dict().items():
        name = rename_key(key, SAM2_TO_OURS, inverse=True)
        if name is not None:
            state[name] = value.clone()
    state["maskmem_tpos_enc"] = torch.zeros(7, 1, 1, 4)
    return state
