"""Compact model packages (rs2sam2.weights.compact): only what differs from the SAM2 base is stored; the
base is found in the Hub cache (by file or by Hub repo id) and must match."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from rs2sam2 import RS2SAM2
from rs2sam2.weights.base_checkpoints import load_sam2_checkpoint
from rs2sam2.weights.compact import COMPACT_PREFIXES, tensor_sha256
from rs2sam2.weights.state_dict import CheckpointError

from .conftest import (
    BASE_FILE,
    BASE_REPO,
    put_in_cache,
    sam2_base_checkpoint,
)


# --------------------------------------------------------------------------------------- compact
def test_compact_package_reassembles_from_the_base_in_the_cache(tmp_path, tiny_model, offline_cache):
    base_file = tmp_path / BASE_FILE
    torch.save({"model": sam2_base_checkpoint(tiny_model)}, base_file)
    put_in_cache(offline_cache, BASE_REPO, {BASE_FILE: base_file})
    report = load_sam2_checkpoint(tiny_model, BASE_REPO, filename=BASE_FILE)  # records the base
    assert report.ignored == ["maskmem_tpos_enc"]
    assert tiny_model.config.base_model == {"repo_id": BASE_REPO, "filename": BASE_FILE}

    full = tiny_model.save_pretrained(tmp_path / "full")
    compact = tiny_model.save_pretrained(tmp_path / "compact", compact=True, dtype=torch.bfloat16)
    stored = load_file(compact / "model.safetensors")
    assert not any(k.startswith(COMPACT_PREFIXES) for k in stored)
    config = json.loads((compact / "config.json").read_text())
    assert config["package"] == {"dtype": "bfloat16", "omitted_prefixes": list(COMPACT_PREFIXES)}
    frozen = {k: v for k, v in tiny_model.state_dict().items() if k.startswith(COMPACT_PREFIXES)}
    assert config["base_model"] == {
        "repo_id": BASE_REPO,
        "filename": BASE_FILE,
        "sha256": tensor_sha256(frozen),
    }
    assert (compact / "model.safetensors").stat().st_size < 0.5 * (full / "model.safetensors").stat().st_size

    loaded = RS2SAM2.from_pretrained(compact)
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # exact: restored from the fp32 base
    assert torch.equal(state["text_proj.weight"], tiny_model.text_proj.weight.detach().bfloat16().float())

    # A different base under the same name: the checksum catches it.
    tampered = sam2_base_checkpoint(tiny_model)
    tampered["image_encoder.trunk.blocks.0.attn.qkv.weight"] += 1e-3
    torch.save({"model": tampered}, base_file)
    put_in_cache(offline_cache, BASE_REPO, {BASE_FILE: base_file})
    with pytest.raises(CheckpointError, match="does not match this package: sha256"):
        RS2SAM2.from_pretrained(compact)
    # No base in the cache (offline): a clear error naming the file.
    shutil.rmtree(offline_cache / f"models--{BASE_REPO.replace('/', '--')}")
    with pytest.raises(FileNotFoundError, match=f"'{BASE_FILE}' not found in Hub repo '{BASE_REPO}'"):
        RS2SAM2.from_pretrained(compact)


def test_sam2_base_by_hub_repo_id(tmp_path, tiny_model, offline_cache):
    """``load_sam2_checkpoint(model, "facebook/sam2-hiera-tiny")``: file name from sam2's table, via cache."""
    torch.save({"model": sam2_base_checkpoint(tiny_model)}, tmp_path / "sam2_hiera_tiny.pt")
    put_in_cache(
        offline_cache, "facebook/sam2-hiera-tiny", {"sam2_hiera_tiny.pt": tmp_path / "sam2_hiera_tiny.pt"}
    )
    report = load_sam2_checkpoint(tiny_model, "facebook/sam2-hiera-tiny")
    assert report.source == "facebook/sam2-hiera-tiny/sam2_hiera_tiny.pt" and report.ignored == [
        "maskmem_tpos_enc"
    ]
    assert tiny_model.config.base_model == {
        "repo_id": "facebook/sam2-hiera-tiny",
        "filename": "sam2_hiera_tiny.pt",
    }
    with pytest.raises(FileNotFoundError, match="not a file or folder, nor a known SAM2 Hub repo"):
        load_sam2_checkpoint(tiny_model, "someone/unknown-sam2")


def test_compact_refuses_weights_that_differ_from_the_base(tmp_path, tiny_model, offline_cache):
    base = sam2_base_checkpoint(tiny_model)
    with torch.no_grad():
        tiny_model.image_encoder.neck.convs[0].conv.bias.add_(1.0)
    torch.save({"model": base}, tmp_path / BASE_FILE)
    put_in_cache(offline_cache, BASE_REPO, {BASE_FILE: tmp_path / BASE_FILE})
    tiny_model.config.base_model = {"repo_id": BASE_REPO, "filename": BASE_FILE}
    with pytest.raises(ValueError, match=r"frozen tensors differ from base .*neck\.convs\.0\.conv\.bias"):
        tiny_model.save_pretrained(tmp_path / "c", compact=True)
    tiny_model.config.base_model = {}
    with pytest.raises(CheckpointError, match="base_model lacks"):
        tiny_model.save_pretrained(tmp_path / "c", compact=True)
