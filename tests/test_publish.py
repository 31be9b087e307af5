"""Publishing: local folder layout and card, Hub round trip against a loopback server, errors, no token leaks."""

import json
import socket

import pytest

from brats_llm.publish.hub import PublishError, PublishParams, folder_revision, load_published, publish
from brats_llm.slices.slices import load_slices
from tests.hub_server import HubServer

TOKEN = "hf_testSECRETtoken0123456789"


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True, raising=False)


def run_publish(built, out, params):
    return publish(built / "volumes", built / "slices", built / "geometry", built / "conversations", out / "hub",
                   out / "revision.json", params, {"prepare": {"slices": 20}}, "md5-abc", synthetic=True)


def test_slices_dataset(built):
    slices = load_slices(built / "slices")
    row = slices[0]
    assert row["image"].size == (24, 24) and row["plane"] == "axial" and row["modality"] == "flair"
    assert set(slices["split"]) == {"test", "trainval"}
    for pid in set(slices["patient_id"]):  # the tumour range only: first and last rows have tumour
        rows = [r for r in slices.select_columns(["patient_id", "has_tumour", "slice_index"]) if r["patient_id"] == pid]
        assert rows[0]["has_tumour"] and rows[-1]["has_tumour"]


def test_local_publish_and_load_by_revision(built, tmp_path):
    record = run_publish(built, tmp_path, PublishParams())
    assert record["repo_id"] is None and record["revision"] == folder_revision(tmp_path / "hub")
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "config_name: conversations-polygon" in card and "md5-abc" in card and "Menze" in card
    assert "synthetic" in card
    conversations = load_published(tmp_path / "revision.json", "conversations-bbox")
    original = load_slices(built / "conversations" / "bbox" / "train")
    assert list(conversations["train"]["messages"]) == list(original["messages"])
    again = run_publish(built, tmp_path, PublishParams())  # idempotent
    assert again["revision"] == record["revision"]
    (tmp_path / "hub" / "geometry" / "extra.txt").write_text("changed")
    with pytest.raises(ValueError, match="no longer matches"):
        load_published(tmp_path / "revision.json", "geometry")


def test_hub_round_trip_without_leaking_the_token(built, tmp_path, hub_env):
    with HubServer() as hub:
        params = PublishParams(repo_id="lab/brats-demo", endpoint=hub.endpoint)
        record = run_publish(built, tmp_path, params)
        assert hub.state.repos["lab/brats-demo"]["private"] is True
        assert len(record["revision"]) == 40
        assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in hub.state.seen_headers)
        loaded = load_published(tmp_path / "revision.json", "geometry")
        assert list(loaded["train"]["polygon"]) == list(load_slices(built / "geometry")["polygon"])
        again = run_publish(built, tmp_path, params)
        assert again["revision"] == record["revision"]  # same content, same tree
    for path in tmp_path.rglob("*"):
        if path.is_file() and "hf-home" not in path.parts:
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in json.dumps(record)


def test_hub_errors_are_clear(built, tmp_path, hub_env):
    with HubServer() as hub:
        hub.state.fail_with = 401
        with pytest.raises(PublishError, match="HTTP 401.*HF_TOKEN") as info:
            run_publish(built, tmp_path, PublishParams(repo_id="lab/x", endpoint=hub.endpoint))
        assert TOKEN not in str(info.value)
    assert (tmp_path / "hub" / "README.md").is_file()  # nothing local lost
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PublishError, match=f"127.0.0.1:{port}"):
        run_publish(built, tmp_path, PublishParams(repo_id="lab/x", endpoint=f"http://127.0.0.1:{port}"))
