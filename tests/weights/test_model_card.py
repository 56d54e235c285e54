"""The model card (rs2sam2.weights.model_card): metadata and body."""

from __future__ import annotations

from rs2sam2 import RS2SAM2Config
from rs2sam2.weights.model_card import Evaluation, ModelCardInfo, generate_model_card


# --------------------------------------------------------------------------------------- model card
def test_model_card_metadata_and_body(tiny_config):
    from huggingface_hub import ModelCard

    config = RS2SAM2Config.from_dict(
        {**tiny_config.to_dict(), "base_model": {"repo_id": "facebook/sam2-hiera-large"}}
    )
    info = ModelCardInfo(
        model_name="RS2-SAM2 (RRSIS-D)",
        repo_id="someone/rs2sam2-rrsisd",
        datasets=["someone/rrsis-d"],
        evaluations=[
            Evaluation("RRSIS-D", "test", {"mIoU": 66.72, "oIoU": 78.99, "Pr@0.5": 77.56}, "someone/rrsis-d")
        ],
    )
    text = str(generate_model_card(config, info, num_parameters=123_000_000))
    card = ModelCard(text)
    meta = card.data.to_dict()
    assert meta["library_name"] == "rs2sam2" and meta["license"] == "apache-2.0"
    assert meta["base_model"] == ["facebook/sam2-hiera-large"] and meta["datasets"] == ["someone/rrsis-d"]
    assert {"rs2sam2", "remote-sensing", "referring-image-segmentation"} <= set(meta["tags"])
    results = meta["model-index"][0]["results"][0]
    assert {m["name"]: m["value"] for m in results["metrics"]} == {
        "mIoU": 66.72,
        "oIoU": 78.99,
        "Pr@0.5": 77.56,
    }
    assert results["dataset"]["split"] == "test"
    assert 'RS2SAM2Predictor.from_pretrained("someone/rs2sam2-rrsisd")' in text
    assert "| RRSIS-D | test | 66.72 | 78.99 | 77.56 |" in text
    assert (
        "arXiv:2503.07266" in text
        and "github.com/rongfu-dsb/RS2-SAM2" in text
        and "123.0 M parameters" in text
    )
