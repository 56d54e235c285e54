"""The app's deployment policy: public mode (Spaces, non-loopback, forced) refuses local model paths and
non-allowed Hub ids with one message; local mode keeps today's freedom; errors name no server path."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from rs2sam2 import app as logic
from rs2sam2.app import models as app_models
from rs2sam2.app import policy
from rs2sam2.predictor import RS2SAM2Predictor
from rs2sam2.testing import register_app_predictor

ENV_VARS = (policy.MODE_ENV, policy.SPACE_ENV, policy.SERVER_NAME_ENV, policy.ALLOW_LOCAL_ENV,
            policy.ALLOWED_MODELS_ENV)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    logic.reset_deployment()
    yield
    logic.reset_deployment()


@pytest.fixture()
def loads(monkeypatch) -> list:
    """Stands in for model loading: records what would be loaded."""
    calls: list = []

    def fake(source, subfolder=None):
        calls.append((source, subfolder))
        return object()

    monkeypatch.setattr(app_models, "_predictors", {})
    monkeypatch.setattr(RS2SAM2Predictor, "from_pretrained", staticmethod(fake))
    return calls


@pytest.mark.parametrize(
    ("env", "server", "public"),
    [
        ({}, None, False),
        ({}, "127.0.0.1", False),
        ({}, "localhost", False),
        ({}, "::1", False),
        ({}, "0.0.0.0", True),
        ({}, "192.168.1.7", True),
        ({}, "my-host.example", True),
        ({"SPACE_ID": "user/space"}, "127.0.0.1", True),
        ({"GRADIO_SERVER_NAME": "0.0.0.0"}, None, True),
        ({"RS2SAM2_APP_MODE": "local", "SPACE_ID": "user/space"}, "0.0.0.0", False),
        ({"RS2SAM2_APP_MODE": "public"}, "127.0.0.1", True),
    ],
)
def test_mode_detection(env, server, public):
    assert policy.is_public(server, env) is public
    assert policy.policy_from_env(server, env=env).public is public


def test_mode_option_and_bad_values():
    assert policy.policy_from_env("0.0.0.0", mode="local", env={}).public is False
    assert policy.policy_from_env(None, mode="public", env={}).public is True
    with pytest.raises(ValueError, match="RS2SAM2_APP_MODE must be one of"):
        policy.is_public(None, {"RS2SAM2_APP_MODE": "open"})


PROBES = ["/etc", "/root", "~", "../../", "/", "./demo", "..", "demo/rs2sam2-tiny-synthetic",
          "/tmp/gradio", "C:\\Windows", "file:///etc/passwd", "someone/else", "someone/else/sub",
          "ReeF2025/RS2-SAM2/../../etc", "ReeF2025", "ReeF2025/RS2-SAM2/a b"]  # fmt: skip


def test_public_mode_refuses_with_one_message_and_loads_nothing(loads, monkeypatch, tmp_path):
    monkeypatch.setenv("SPACE_ID", "user/space")
    existing = tmp_path / "model"
    existing.mkdir()
    (existing / "config.json").write_text("{}")
    messages = set()
    for probe in [*PROBES, str(existing), str(tmp_path / "missing"), str(existing / "config.json")]:
        with pytest.raises(gr.Error) as info:
            logic.get_predictor(probe)
        messages.add(info.value.message)
    assert messages == {policy.REFUSED_MESSAGE} and loads == []
    # the allow-list: the paper's release with any subfolder (Hub ids are case-insensitive); bundled model
    logic.get_predictor("ReeF2025/RS2-SAM2/rrsisd")
    logic.get_predictor("reef2025/rs2-sam2")
    assert loads == [("ReeF2025/RS2-SAM2", "rrsisd"), ("reef2025/rs2-sam2", None)]
    register_app_predictor(logic.BUNDLED_MODEL_ID, "bundled")
    assert logic.get_predictor(logic.BUNDLED_MODEL_ID) == "bundled"


def test_public_mode_through_the_segment_event(loads, monkeypatch, tmp_path):
    monkeypatch.setenv("SPACE_ID", "user/space")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    for custom in ("/etc", str(tmp_path)):
        with pytest.raises(gr.Error, match=policy.REFUSED_MESSAGE):
            logic.segment_event(str(tmp_path / "x.png"), "a roof", logic.BUNDLED_MODEL_ID, custom, "", 0.5, 0)
    assert loads == []


def test_allow_list_and_local_paths_can_be_loosened(loads, monkeypatch, tmp_path):
    logic.configure_deployment("0.0.0.0")  # public by address
    monkeypatch.setenv(policy.ALLOWED_MODELS_ENV, "me/model, org/other")
    logic.configure_deployment("0.0.0.0")
    logic.get_predictor("me/model/sub")
    with pytest.raises(gr.Error, match=policy.REFUSED_MESSAGE):
        logic.get_predictor("ReeF2025/RS2-SAM2")  # the list replaces the default
    with pytest.raises(gr.Error, match=policy.REFUSED_MESSAGE):
        logic.get_predictor(str(tmp_path))
    monkeypatch.setenv(policy.ALLOW_LOCAL_ENV, "1")
    logic.configure_deployment("0.0.0.0")
    logic.get_predictor(str(tmp_path))
    assert loads == [("me/model", "sub"), (Path(tmp_path), None)]


def test_local_mode_keeps_todays_freedom(loads, tmp_path):
    logic.configure_deployment("127.0.0.1")
    logic.get_predictor(str(tmp_path))
    logic.get_predictor("someone/else/sub")
    assert loads == [(Path(tmp_path), None), ("someone/else", "sub")]


def test_public_mode_never_probes_the_disk_for_hub_ids(loads, monkeypatch, tmp_path):
    """A relative folder named like an allowed repo is not served as a local folder in public mode."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ReeF2025" / "RS2-SAM2").mkdir(parents=True)
    logic.configure_deployment(mode="public")
    assert logic.split_model_id("ReeF2025/RS2-SAM2") == ("ReeF2025/RS2-SAM2", None)
    logic.configure_deployment(mode="local")
    assert logic.split_model_id("ReeF2025/RS2-SAM2") == (Path("ReeF2025/RS2-SAM2"), None)


def test_errors_name_no_server_path(tmp_path, monkeypatch):
    bad = tmp_path / "deep" / "folder" / "notes.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"hello, not a picture")
    with pytest.raises(gr.Error) as info:
        logic.read_image(bad)
    assert "notes.png" in info.value.message and str(tmp_path) not in info.value.message

    def broken(source, subfolder=None):
        raise OSError(f"cannot open {tmp_path}/cache/models--x/blobs/abc: permission denied")

    monkeypatch.setattr(app_models, "_predictors", {})
    monkeypatch.setattr(RS2SAM2Predictor, "from_pretrained", staticmethod(broken))
    with pytest.raises(gr.Error) as info:
        logic.get_predictor("someone/model")
    assert "could not be loaded" in info.value.message and str(tmp_path) not in info.value.message
    assert "abc: permission denied" in info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cannot read /tmp/gradio/ab12/x.png as an image", "cannot read x.png as an image"),
        ("folder '/etc' does not exist", "folder 'etc' does not exist"),
        ("see https://huggingface.co/ReeF2025/RS2-SAM2", "see https://huggingface.co/ReeF2025/RS2-SAM2"),
        ("model ReeF2025/RS2-SAM2/rrsisd", "model ReeF2025/RS2-SAM2/rrsisd"),
        ("C:\\Users\\me\\x.tif is bad", "x.tif is bad"),
        ("shape (1, 2) / 3", "shape (1, 2) / 3"),
    ],
)
def test_scrub_paths(text, expected):
    assert policy.scrub_paths(text) == expected


def test_app_bounds_concurrency_of_preview_and_segment():
    import app

    limits = {fn.api_name: fn.concurrency_limit for fn in app.demo.fns.values()}
    assert limits["segment"] == logic.CONCURRENCY_LIMIT == 2
    assert limits["preview"] == logic.PREVIEW_CONCURRENCY_LIMIT == 4
