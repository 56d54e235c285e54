"""Model folders and the Hub (rs2sam2.weights.hub): save → load round trips, offline resolution from a
test-made Hugging Face cache, bad inputs, and push_to_hub through huggingface_hub's real upload code against
a Hub-compatible server on loopback (compact packages: test_compact.py; the card: test_model_card.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rs2sam2 import RS2SAM2
from rs2sam2.cli import build_parser, main
from rs2sam2.weights.state_dict import CheckpointError

from ..conftest import random_inputs
from .conftest import (
    folder_files,
    official_state_dict,
    put_in_cache,
    same_weights,
    write_official_folder,
)


# ----------------------------------------------------------------------------------- round trips
def test_fp32_round_trip_is_exact(tmp_path, tiny_model):
    folder = tiny_model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "rs2sam2" and config["package"] == {
        "dtype": "float32",
        "omitted_prefixes": [],
    }
    loaded = RS2SAM2.from_pretrained(folder)
    # Equal config and bit-identical tensors (parameters and the prompt encoder's buffer) = identical outputs.
    assert loaded.config == tiny_model.config and same_weights(loaded, tiny_model)
    assert not loaded.training and loaded.dtype == torch.float32
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == [
        n for n, p in tiny_model.named_parameters() if p.requires_grad
    ]


def test_bf16_package_is_half_the_size_and_close(tmp_path, tiny_model):
    full = tiny_model.save_pretrained(tmp_path / "fp32")
    half = tiny_model.save_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    size = lambda f: (f / "model.safetensors").stat().st_size  # noqa: E731
    assert 0.49 < size(half) / size(full) < 0.51
    assert {v.dtype for v in load_file(half / "model.safetensors").values()} == {torch.bfloat16}
    loaded = RS2SAM2.from_pretrained(half)  # float32 model holding bf16-rounded weights
    assert loaded.dtype == torch.float32
    inputs = random_inputs(tiny_model.config, batch=1)
    with torch.no_grad():
        ref, out = tiny_model.eval()(**inputs), loaded(**inputs)
    # Stated tolerance for bf16 weights: |Δ| ≤ 5e-3 + 2 % of |ref| on logits and pseudo-mask.
    torch.testing.assert_close(out.logits, ref.logits, atol=5e-3, rtol=2e-2)
    torch.testing.assert_close(out.pseudo_mask, ref.pseudo_mask, atol=5e-3, rtol=2e-2)
    as_bf16 = RS2SAM2.from_pretrained(half, dtype=torch.bfloat16)
    assert as_bf16.dtype == torch.bfloat16


def test_save_with_processor_and_load_the_predictor_offline(tmp_path, tiny_model, offline_cache):
    from rs2sam2 import RS2SAM2Predictor, RS2SAM2Processor
    from rs2sam2.testing import make_test_tokenizer

    tok_dir = make_test_tokenizer(tmp_path / "tok", vocab_size=120)
    processor = RS2SAM2Processor.from_pretrained(tok_dir, tiny_model.config)
    folder = tiny_model.save_pretrained(tmp_path / "m", processor=processor)
    assert (folder / "tokenizer_config.json").is_file()
    put_in_cache(
        offline_cache, "test-org/rs2sam2-tiny", {f"rrsisd/{k}": v for k, v in folder_files(folder).items()}
    )
    predictor = RS2SAM2Predictor.from_pretrained("test-org/rs2sam2-tiny", subfolder="rrsisd")
    assert same_weights(predictor.model, tiny_model)
    pred = predictor.predict(torch.rand(40, 60, 3).mul(255).byte().numpy(), "the red roof on the left")
    assert pred.mask.shape == (40, 60)


# ---------------------------------------------------------------------------------- offline / Hub
def test_from_pretrained_resolves_repo_and_subfolder_from_the_cache_offline(
    tmp_path, tiny_model, offline_cache
):
    folder = tiny_model.save_pretrained(tmp_path / "m")
    put_in_cache(
        offline_cache, "test-org/rs2sam2", {f"refseg/{k}": v for k, v in folder_files(folder).items()}
    )
    assert same_weights(RS2SAM2.from_pretrained("test-org/rs2sam2", subfolder="refseg"), tiny_model)

    start = time.monotonic()
    with pytest.raises(
        FileNotFoundError, match=r"no weights in Hub repo 'test-org/rs2sam2' \(subfolder 'rrsisd'\).*offline"
    ):
        RS2SAM2.from_pretrained("test-org/rs2sam2", subfolder="rrsisd")
    with pytest.raises(FileNotFoundError, match=r"Hub repo 'test-org/absent'.*offline"):
        RS2SAM2.from_pretrained("test-org/absent")
    assert time.monotonic() - start < 10  # a clear error, not a network wait
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RS2SAM2.from_pretrained(tmp_path / "no-such-folder")


def test_unreachable_hub_falls_back_to_the_cache_quickly(tmp_path, tiny_model, offline_cache, monkeypatch):
    from huggingface_hub import constants

    folder = tiny_model.save_pretrained(tmp_path / "m")
    put_in_cache(offline_cache, "test-org/rs2sam2", folder_files(folder))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: connection refused
    start = time.monotonic()
    assert same_weights(RS2SAM2.from_pretrained("test-org/rs2sam2"), tiny_model)
    with pytest.raises(FileNotFoundError, match=r"Hub repo 'test-org/absent' \[Hub unreachable"):
        RS2SAM2.from_pretrained("test-org/absent")
    assert time.monotonic() - start < 20  # no per-file retry storm
    with pytest.raises(FileNotFoundError, match="no subfolder 'x'"):
        RS2SAM2.from_pretrained(folder, subfolder="x")


def test_official_release_layout_in_the_cache(tmp_path, tiny_config, tiny_model, offline_cache, caplog):
    """ReeF2025/RS2-SAM2-style repo: rrsisd/{config.json, pytorch_model.bin, tokenizer files}."""
    from rs2sam2 import RS2SAM2Processor

    state = official_state_dict(tiny_model, seed=5)
    src = write_official_folder(tmp_path / "rrsisd", state, fmt="bin")
    put_in_cache(offline_cache, "ReeF2025/RS2-SAM2", {f"rrsisd/{k}": v for k, v in folder_files(src).items()})
    with caplog.at_level("INFO", logger="rs2sam2"):
        model = RS2SAM2.from_pretrained("ReeF2025/RS2-SAM2", subfolder="rrsisd", config=tiny_config)
    assert "official RS2-SAM2 checkpoint; converting" in caplog.text
    assert torch.equal(model.text_proj.weight, state["text_feat_linear.weight"])
    processor = RS2SAM2Processor.from_pretrained("ReeF2025/RS2-SAM2", model.config, subfolder="rrsisd")
    assert len(processor.tokenizer) >= model.config.tokenizer.min_vocab_size


def test_convert_cli_from_an_official_repo(tmp_path, tiny_model, offline_cache):
    state = official_state_dict(tiny_model, seed=6)
    src = write_official_folder(tmp_path / "refseg", state, fmt="safetensors")
    put_in_cache(offline_cache, "ReeF2025/RS2-SAM2", {f"refseg/{k}": v for k, v in folder_files(src).items()})
    out = tmp_path / "converted"
    argv = ["convert", "ReeF2025/RS2-SAM2", str(out), "--subfolder", "refseg", "--preset", "tiny"]
    assert main([*argv, "--dtype", "bfloat16"]) == 0
    for name in (
        "sentencepiece.bpe.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
    ):
        assert (out / name).read_bytes() == (src / name).read_bytes()  # copied verbatim
    model = RS2SAM2.from_pretrained(out)
    assert torch.equal(
        model.prompt_generator.mask_linear.weight, state["mask_linear.weight"].bfloat16().float()
    )
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert (
        card.data.base_model == ["ReeF2025/RS2-SAM2"] and "Converted from the official RS2-SAM2" in card.text
    )
    # Without --preset the tiny checkpoint does not fit the official architecture: a clear error, exit 1.
    assert main(["convert", "ReeF2025/RS2-SAM2", str(tmp_path / "x"), "--subfolder", "refseg"]) == 1


# ---------------------------------------------------------------------------------- bad inputs
def test_bad_packages_raise_clear_errors(tmp_path, tiny_model):
    folder = tiny_model.save_pretrained(tmp_path / "ok")
    weights = folder / "model.safetensors"
    good = load_file(weights)

    def variant(name: str, state: dict[str, torch.Tensor] | None = None, config: str | None = None) -> Path:
        out = tmp_path / name
        out.mkdir()
        if state is not None:
            save_file(state, str(out / "model.safetensors"))
        else:
            os.link(weights, out / "model.safetensors")
        (out / "config.json").write_text(config or (folder / "config.json").read_text())
        return out

    truncated = variant("truncated", config=None)
    (truncated / "model.safetensors").unlink()
    (truncated / "model.safetensors").write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        RS2SAM2.from_pretrained(truncated)

    nan = dict(good)
    nan["prompt_generator.mask_linear.weight"] = nan["prompt_generator.mask_linear.weight"].clone()
    nan["prompt_generator.mask_linear.weight"][0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"non-finite .*prompt_generator\.mask_linear\.weight"):
        RS2SAM2.from_pretrained(variant("nan", nan))

    wrong = {**good, "text_proj.weight": torch.zeros(5, 5)}
    with pytest.raises(CheckpointError, match=r"shape mismatches: text_proj\.weight: checkpoint \(5, 5\)"):
        RS2SAM2.from_pretrained(variant("shape", wrong))

    missing = {k: v for k, v in good.items() if k != "sam_decoder.no_mem_embed"}
    extra = {**good, "decoder.head.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"missing keys: sam_decoder\.no_mem_embed"):
        RS2SAM2.from_pretrained(variant("missing", missing))
    with pytest.raises(CheckpointError, match=r"unexpected keys: decoder\.head\.weight"):
        RS2SAM2.from_pretrained(variant("extra", extra))
    lenient = RS2SAM2.from_pretrained(tmp_path / "extra", strict=False)
    assert same_weights(lenient, tiny_model)

    with pytest.raises(CheckpointError, match="model_type 'bert'"):
        RS2SAM2.from_pretrained(variant("bert", config=json.dumps({"model_type": "bert"})))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        RS2SAM2.from_pretrained(variant("json", config="{not json"))
    with pytest.raises(CheckpointError, match="not a valid rs2sam2 config"):
        RS2SAM2.from_pretrained(
            variant("fields", config=json.dumps({"model_type": "rs2sam2", "hiera": {"x": 1}}))
        )
    no_weights = variant("noweights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="looked for model.safetensors"):
        RS2SAM2.from_pretrained(no_weights)
    sam2_file = tmp_path / "sam2.safetensors"  # a SAM2 checkpoint is not a model folder
    save_file({"no_mem_embed": torch.zeros(1, 1, 4)}, str(sam2_file))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RS2SAM2.from_pretrained(sam2_file)


def test_the_mixins_own_save_and_load_go_through_the_strict_hooks(tmp_path, tiny_model):
    from huggingface_hub import ModelHubMixin

    ModelHubMixin.save_pretrained(tiny_model, tmp_path / "m")  # → RS2SAM2._save_pretrained
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "rs2sam2"
    loaded = ModelHubMixin.from_pretrained.__func__(RS2SAM2, tmp_path / "m")  # → RS2SAM2._from_pretrained
    assert same_weights(loaded, tiny_model)


def test_sharded_weights_load(tmp_path, tiny_model):
    folder = tiny_model.save_pretrained(tmp_path / "m")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(folder / name))
    index = {"weight_map": {k: name for name, part in shards.items() for k in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert same_weights(RS2SAM2.from_pretrained(folder), tiny_model)


@pytest.mark.parametrize(
    "shard",
    ["../outside.safetensors", "../../m/model-00001-of-00002.safetensors", "/etc/passwd", "~/x.bin",
     "a/../../outside.safetensors", "C:\\x.bin", "..\\outside.safetensors", "", 7],
)  # fmt: skip
def test_shard_names_must_stay_inside_the_model_folder(tmp_path, tiny_model, shard):
    """An index is data: a weight_map naming a file outside the folder is refused before it is opened."""
    folder = tiny_model.save_pretrained(tmp_path / "m")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    save_file(state, str(tmp_path / "outside.safetensors"))  # a real weights file next to the folder
    index = {"weight_map": {k: shard for k in state}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"names the shard .*must be files inside the model folder"):
        RS2SAM2.from_pretrained(folder)


# ------------------------------------------------------------------------------ push (fake Hub)
class FakeHub:
    """Just the Hub endpoints huggingface_hub's upload path calls: repo create, README YAML validation,
    preupload, the LFS batch API + object PUT, and the NDJSON commit. Anything else is a 404, recorded."""

    LFS_SUFFIXES = (".safetensors", ".bin", ".model")  # as the Hub's default .gitattributes

    def __init__(self) -> None:
        self.repos: dict[
            str, dict
        ] = {}  # repo_id → {"private": bool, "files": {path: bytes}, "commits": int}
        self.lfs: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.auth: set[str] = set()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def reply(self, status: int, payload: dict | None = None) -> None:
                data = json.dumps(payload or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                hub.calls.append(("POST", self.path))
                hub.auth.add(self.headers.get("Authorization", ""))
                path, data = self.path.split("?")[0], self.body()
                if path == "/api/repos/create":
                    req = json.loads(data)
                    repo_id = f"{req['organization']}/{req['name']}"
                    if repo_id in hub.repos:
                        return self.reply(
                            409,
                            {
                                "error": "You already created this model repo",
                                "url": f"{hub.endpoint}/{repo_id}",
                            },
                        )
                    hub.repos[repo_id] = {
                        "private": req.get("visibility") == "private",
                        "files": {},
                        "commits": 0,
                    }
                    return self.reply(200, {"url": f"{hub.endpoint}/{repo_id}"})
                if path == "/api/validate-yaml":
                    return self.reply(200, {"errors": [], "warnings": []})
                parts = path.strip("/").split("/")
                if path.endswith(".git/info/lfs/objects/batch"):
                    objects = json.loads(data)["objects"]
                    return self.reply(
                        200,
                        {
                            "transfer": "basic",
                            "objects": [
                                {
                                    "oid": o["oid"],
                                    "size": o["size"],
                                    "actions": {"upload": {"href": f"{hub.endpoint}/lfs-objects/{o['oid']}"}},
                                }
                                for o in objects
                            ],
                        },
                    )
                if parts[:2] == ["api", "models"] and parts[4] == "preupload":
                    files = json.loads(data)["files"]
                    modes = [
                        {
                            "path": f["path"],
                            "uploadMode": "lfs"
                            if f["path"].endswith((".safetensors", ".model"))
                            else "regular",
                            "shouldIgnore": False,
                        }
                        for f in files
                    ]
                    return self.reply(200, {"files": modes})
                if parts[:2] == ["api", "models"] and parts[4] == "commit":
                    repo = hub.repos[f"{parts[2]}/{parts[3]}"]
                    for line in data.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            repo["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                        elif item["key"] == "lfsFile":
                            repo["files"][item["value"]["path"]] = hub.lfs[item["value"]["oid"]]
                    repo["commits"] += 1
                    oid = hashlib.sha1(str(repo["commits"]).encode()).hexdigest()
                    url = f"{hub.endpoint}/{parts[2]}/{parts[3]}/commit/{oid}"
                    return self.reply(200, {"commitUrl": url, "commitOid": oid, "success": True})
                return self.reply(404, {"error": f"not implemented: POST {path}"})

            def do_PUT(self) -> None:
                hub.calls.append(("PUT", self.path))
                oid = self.path.rsplit("/", 1)[-1]
                data = self.body()
                if hashlib.sha256(data).hexdigest() != oid:
                    return self.reply(400, {"error": "sha256 mismatch"})
                hub.lfs[oid] = data
                return self.reply(200)

            def do_GET(self) -> None:
                hub.calls.append(("GET", self.path))
                return self.reply(404, {"error": f"not implemented: GET {self.path}"})

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_hub(monkeypatch):
    from huggingface_hub import constants

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        # The fake server speaks the LFS protocol, not Xet's content-addressed storage.
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        yield hub


def test_push_to_hub_uploads_a_loadable_package(tmp_path, tiny_model, fake_hub):
    from rs2sam2 import RS2SAM2Processor
    from rs2sam2.testing import make_test_tokenizer

    processor = RS2SAM2Processor.from_pretrained(
        make_test_tokenizer(tmp_path / "tok", vocab_size=120), tiny_model.config
    )
    url = tiny_model.push_to_hub(
        "someone/rs2sam2-tiny", processor=processor, private=True, token="hf_fake_token"
    )
    assert url.startswith(f"{fake_hub.endpoint}/someone/rs2sam2-tiny/commit/")
    repo = fake_hub.repos["someone/rs2sam2-tiny"]
    assert repo["private"] and repo["commits"] == 1 and fake_hub.auth == {"Bearer hf_fake_token"}
    files = repo["files"]
    assert {"config.json", "model.safetensors", "README.md", "tokenizer_config.json"} <= set(files)
    # The weights went through the LFS batch API and a PUT of their bytes; small files inline in the commit.
    lfs_files = [name for name in files if name.endswith(FakeHub.LFS_SUFFIXES)]
    assert sum(method == "PUT" for method, _ in fake_hub.calls) == len(lfs_files) >= 1
    endpoints = {(m, p.split("?")[0]) for m, p in fake_hub.calls if m != "PUT"}
    assert endpoints - {("GET", "/api/agent-harnesses")} == {
        ("POST", "/api/repos/create"),
        ("POST", "/api/validate-yaml"),  # the README's YAML metadata
        ("POST", "/api/models/someone/rs2sam2-tiny/preupload/main"),
        ("POST", "/someone/rs2sam2-tiny.git/info/lfs/objects/batch"),
        ("POST", "/api/models/someone/rs2sam2-tiny/commit/main"),
    }
    assert json.loads(files["config.json"])["model_type"] == "rs2sam2"
    assert 'from_pretrained("someone/rs2sam2-tiny")' in files["README.md"].decode()
    received = tmp_path / "received"
    received.mkdir()
    for name, data in files.items():
        (received / name).write_bytes(data)
    assert same_weights(RS2SAM2.from_pretrained(received), tiny_model)


def test_push_cli(tmp_path, tiny_model, fake_hub, capsys):
    folder = tiny_model.save_pretrained(tmp_path / "m", dtype=torch.float16)
    assert main(["push", str(folder), "someone/pushed", "--token", "hf_cli"]) == 0
    assert capsys.readouterr().out.strip().startswith(f"{fake_hub.endpoint}/someone/pushed/commit/")
    repo = fake_hub.repos["someone/pushed"]
    assert (
        not repo["private"]
        and repo["files"]["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    )
    assert main(["push", str(folder), "someone/pushed"]) == 0  # existing repo: 409 on create is fine
    assert repo["commits"] == 2
    (tmp_path / "notmodel").mkdir()
    assert main(["push", str(tmp_path / "notmodel"), "someone/x"]) == 1
    assert "no config.json" in capsys.readouterr().err


def test_cli_registers_convert_and_push():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"convert", "push"} <= set(sub.choices)
    args = build_parser().parse_args(
        ["convert", "src", "out", "--subfolder", "rrsisd", "--dtype", "bfloat16"]
    )
    assert (args.src, args.out, args.subfolder, args.dtype, args.compact) == (
        "src",
        "out",
        "rrsisd",
        "bfloat16",
        False,
    )
    args = build_parser().parse_args(["push", "folder", "me/repo", "--private"])
    assert (args.folder, args.repo_id, args.private, args.token) == ("folder", "me/repo", True, None)
