"""Publishing: local folder layout and card, Hub round trip against a loopback server, errors, no token leaks."""

import json
import socket
from pathlib import Path

import pytest

from brats_llm.provenance import folder_revision
from brats_llm.publish.hub import PublishError, PublishParams, publish
from brats_llm.publish.pinned import load_published
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
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))  # read at import


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


def test_publish_error_is_a_project_error():
    from brats_llm.errors import BratsLlmError

    assert issubclass(PublishError, BratsLlmError) and issubclass(PublishError, RuntimeError)


def _uploads(hub) -> list[tuple[str, str]]:
    """Requests that would write repo content (preupload, LFS, commit)."""
    return [(m, p) for m, p in hub.state.requests
            if m in ("POST", "PUT") and ("/preupload/" in p or "/commit/" in p or "lfs" in p)]


@pytest.mark.parametrize("existing_private, wanted_private", [(False, True), (True, False)])
def test_existing_repo_of_other_visibility_is_refused(built, tmp_path, hub_env, existing_private, wanted_private):
    with HubServer() as hub:
        hub.state.add_repo("lab/brats-demo", private=existing_private, files={"README.md": b"theirs"})
        params = PublishParams(repo_id="lab/brats-demo", endpoint=hub.endpoint, private=wanted_private)
        with pytest.raises(PublishError) as info:
            run_publish(built, tmp_path, params)
        message = str(info.value)
        now = "private" if existing_private else "public"
        assert f"{hub.endpoint}/datasets/lab/brats-demo" in message and f"the repo is {now}" in message
        assert f"publish.private is {str(wanted_private).lower()}" in message and "never change" in message
        assert TOKEN not in message and "huggingface-cli" not in message
        assert hub.state.commits("lab/brats-demo") == 1 and not _uploads(hub)  # nothing uploaded
        assert hub.state.repos["lab/brats-demo"]["private"] is existing_private  # visibility untouched
    assert not (tmp_path / "revision.json").exists() and (tmp_path / "hub" / "README.md").is_file()


def test_existing_private_repo_receives_the_upload(built, tmp_path, hub_env):
    with HubServer() as hub:
        hub.state.add_repo("lab/brats-demo", private=True)
        record = run_publish(built, tmp_path, PublishParams(repo_id="lab/brats-demo", endpoint=hub.endpoint))
        assert hub.state.commits("lab/brats-demo") == 2 and hub.state.repos["lab/brats-demo"]["private"] is True
        assert record["endpoint"] == hub.endpoint
        assert "README.md" in hub.state.files("lab/brats-demo", record["revision"])[1]


def test_endpoint_from_hf_endpoint_is_recorded(built, tmp_path, hub_env, monkeypatch):
    with HubServer() as hub:
        from huggingface_hub import constants

        default, template = constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE
        # huggingface_hub reads HF_ENDPOINT at import: set the constants it derives from it as well
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template.replace(default, hub.endpoint, 1))
        record = run_publish(built, tmp_path, PublishParams(repo_id="lab/brats-env"))
        assert record["endpoint"] == hub.endpoint
        assert json.loads((tmp_path / "revision.json").read_text())["endpoint"] == hub.endpoint
        monkeypatch.undo()  # back to the default endpoint: only the record leads to the server
        assert constants.ENDPOINT == default
        loaded = load_published(tmp_path / "revision.json", "geometry")
        assert len(loaded["train"]) == len(load_slices(built / "geometry"))


def test_endpoint_credentials_are_never_recorded():
    from brats_llm.publish.hub import resolve_endpoint

    assert resolve_endpoint(f"https://user:{TOKEN}@hub.example.org/") == "https://hub.example.org"
    assert resolve_endpoint("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


def test_adapter_upload_never_widens_access(tmp_path, hub_env):
    from brats_llm.publish.hub import upload_to_hub

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with HubServer() as hub:
        hub.state.add_repo("lab/public-adapter", private=False)
        with pytest.raises(PublishError, match="lab/public-adapter: the repo is public but private is true") as info:
            upload_to_hub(adapter, "lab/public-adapter", repo_type="model", endpoint=hub.endpoint)
        assert TOKEN not in str(info.value)
        assert hub.state.commits("lab/public-adapter") == 1 and not _uploads(hub)
        sha = upload_to_hub(adapter, "lab/new-adapter", repo_type="model", endpoint=hub.endpoint)
        assert hub.state.repos["lab/new-adapter"]["private"] is True
        assert hub.state.files("lab/new-adapter", sha)[1]["adapter_config.json"] == b"{}"


def test_login_hints_name_hf_auth_login(built, tmp_path, hub_env):
    from click.testing import CliRunner

    from brats_llm.cli import main

    with HubServer() as hub:
        hub.state.fail_with = 403
        with pytest.raises(PublishError, match="HTTP 403.*`hf auth login`") as info:
            run_publish(built, tmp_path, PublishParams(repo_id="lab/x", endpoint=hub.endpoint))
        assert "huggingface-cli" not in str(info.value) and TOKEN not in str(info.value)
    help_text = " ".join(CliRunner().invoke(main, ["publish", "--help"]).output.split())  # click re-wraps lines
    assert "hf auth login" in help_text and "huggingface-cli" not in help_text
    source = (Path(__file__).resolve().parents[1] / "brats_llm" / "publish" / "hub.py").read_text()
    assert "huggingface-cli" not in source


def test_plain_load_dataset_by_revision_outside_the_repo(built, tmp_path, hub_env):
    """README's example for people outside this repository: datasets.load_dataset(repo_id, config, revision=sha)."""
    import os
    import subprocess
    import sys

    with HubServer() as hub:
        record = run_publish(built, tmp_path, PublishParams(repo_id="lab/brats-demo", endpoint=hub.endpoint))
        code = ("import sys; from datasets import load_dataset; "
                "d = load_dataset('lab/brats-demo', 'geometry', revision=sys.argv[1]); "
                "print(sorted(d), len(d['train']))")
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_DATASETS_CACHE": str(tmp_path / "ds-cache")}
        result = subprocess.run([sys.executable, "-c", code, record["revision"]], env=env, capture_output=True,
                                text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    local = load_published(tmp_path / "revision.json", "geometry")
    assert result.stdout.strip() == f"{sorted(local)} {len(local['train'])}"


def test_a_stage_checks_and_fetches_only_its_config(built, tmp_path, hub_env, monkeypatch):
    """Local: only the config's files are hashed; Hub: only they and the card are downloaded, then checked."""
    import brats_llm.publish.pinned as pinned
    from brats_llm.errors import InputError

    run_publish(built, tmp_path, PublishParams())
    (tmp_path / "hub" / "volumes" / "train-00000-of-00001.parquet").write_bytes(b"changed after publish")
    assert len(load_published(tmp_path / "revision.json", "geometry")["train"]) > 0  # volumes are not read
    with pytest.raises(InputError, match="no longer matches"):
        load_published(tmp_path / "revision.json", "volumes")
    with monkeypatch.context() as patch:
        patch.setattr(pinned, "folder_revision", lambda folder: pytest.fail("hashed the whole folder"))
        load_published(tmp_path / "revision.json", "conversations-cls")

    with HubServer() as hub:
        record = run_publish(built, tmp_path / "remote", PublishParams(repo_id="lab/brats-demo", endpoint=hub.endpoint))
        fetched = pinned.published_folder(tmp_path / "remote" / "revision.json", "geometry")
        (fetched / "geometry" / "train-00000-of-00001.parquet").resolve().write_bytes(b"not what publish uploaded")
        with pytest.raises(InputError, match="no longer matches"):
            pinned.published_folder(tmp_path / "remote" / "revision.json", "geometry")
    assert record["revision"] and (fetched / "geometry").is_dir() and not (fetched / "volumes").exists()


@pytest.mark.parametrize("repo_id", ["../../etc", "a/b/c", "-lab/x", "lab/" + "x" * 97])
def test_invalid_repo_id_is_refused_with_the_reason(repo_id, tmp_path):
    from brats_llm.publish.hub import upload_to_hub

    with pytest.raises(ValueError, match=r"repo_id .* is not a valid Hub repo id \('name' or 'namespace/name'\): Repo id must"):
        PublishParams(repo_id=repo_id)
    with pytest.raises(PublishError, match="is not a valid Hub repo id") as info:  # before any connection
        upload_to_hub(tmp_path, repo_id, endpoint="http://127.0.0.1:9")
    assert "HFValidationError" not in str(info.value)
