"""CNN volumes from the pinned published revision: same rows as the prepared folder, streamed, provenance by revision."""

import json

import pyarrow.parquet as pq
import pytest
import torch

from brats_llm.errors import InputError
from brats_llm.evaluate.cnn import ClsEvalParams, evaluate_cnn
from brats_llm.publish.hub import PublishParams, publish
from brats_llm.train.cnn.data import load_split, require_grades
from brats_llm.train.cnn.source import VolumeSource
from brats_llm.train.cnn.trainer import CnnTrainParams, train_cnn
from tests.hub_server import HubServer
from tests.test_publish import hub_env  # noqa: F401  (fixture)

ONE_EPOCH = CnnTrainParams(epochs=1, batch_size=2, downsample=2, checkpoint_every=1, augment=False)


def publish_small_groups(built, out, monkeypatch, params=None):
    """Publish ``built`` with parquet row groups of 2 patients (real cohorts have many row groups)."""
    monkeypatch.setattr("datasets.io.parquet.get_writer_batch_size_from_data_size", lambda rows, size: 2)
    publish(built / "volumes", built / "slices", built / "geometry", built / "conversations", out / "hub",
            out / "revision.json", params or PublishParams(), {}, "md5-test", synthetic=True)
    return out / "revision.json"


def test_published_rows_equal_the_prepared_folder_in_any_order(built, tmp_path, monkeypatch):
    revision_file = publish_small_groups(built, tmp_path, monkeypatch)
    published, folder = VolumeSource(revision_file), VolumeSource(built / "volumes")
    assert published.patient_ids == folder.patient_ids and len(published._groups) == 3
    order = folder.patient_ids[::-1][:5]
    for target in ("wt", "regions"):
        a = load_split(published, order, 2, progress=False, target=target)
        b = load_split(folder, order, 2, progress=False, target=target)
        assert a.patient_ids == order
        assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and torch.equal(a.labels, b.labels)
        assert (a.spacing_mm == b.spacing_mm).all()
    record = json.loads(revision_file.read_text())
    assert published.version == {"revision_file": revision_file.as_posix(), "repo_id": None, "config": "volumes",
                                 "config_revision": record["config_revisions"]["volumes"]}
    require_grades(published)


def test_republishing_other_configs_keeps_the_volumes_pin(built, tmp_path, monkeypatch):
    """A new card (other stages' params) or other configs change the revision, not what a CNN was trained on."""
    first = json.loads(publish_small_groups(built, tmp_path / "a", monkeypatch).read_text())
    publish(built / "volumes", built / "slices", built / "geometry", built / "conversations", tmp_path / "b" / "hub",
            tmp_path / "b" / "revision.json", PublishParams(), {"conversations": {"seed": 1}}, "md5-test", synthetic=True)
    second = json.loads((tmp_path / "b" / "revision.json").read_text())
    assert first["revision"] != second["revision"]  # the card differs
    assert first["config_revisions"]["volumes"] == second["config_revisions"]["volumes"]
    assert VolumeSource(tmp_path / "a" / "revision.json").version["config_revision"] == \
        VolumeSource(tmp_path / "b" / "revision.json").version["config_revision"]


def test_a_folder_that_is_not_a_prepare_output_is_refused_by_name(built, tmp_path, monkeypatch):
    publish_small_groups(built, tmp_path, monkeypatch)
    with pytest.raises(InputError, match=r"hub: not a volumes folder written by prepare.*hub_revision.json"):
        VolumeSource(tmp_path / "hub")


def test_streaming_a_split_decodes_each_row_group_once(built, tmp_path, monkeypatch):
    source = VolumeSource(publish_small_groups(built, tmp_path, monkeypatch))
    decoded = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, columns=None, **kw: (columns is None and decoded.append(i)) or real(self, i, columns, **kw))
    ids = source.patient_ids
    for start in range(0, len(ids), 3):  # chunks across row-group boundaries, in storage order
        load_split(source, ids[start:start + 3], 1, progress=False)
    assert decoded == [0, 1, 2]
    decoded.clear()
    load_split(source, ids[::-1], 1, progress=False)  # a split listed in another order is read in storage order
    assert decoded == [0, 1, 2]


def test_a_changed_or_incomplete_publication_is_refused(built, tmp_path, monkeypatch):
    revision_file = publish_small_groups(built, tmp_path, monkeypatch)
    with pytest.raises(InputError, match="not in the dataset"):
        load_split(revision_file, ["BraTS20_Training_999"], 1, progress=False)
    (tmp_path / "hub" / "volumes" / "train-00000-of-00001.parquet").write_bytes(b"changed after publish")
    with pytest.raises(InputError, match="no longer matches"):
        VolumeSource(revision_file)


def test_training_on_the_revision_gives_the_folder_model_and_names_the_revision(built, tmp_path, monkeypatch):
    revision_file = publish_small_groups(built, tmp_path, monkeypatch)
    train_cnn("cls", revision_file, built / "splits.csv", tmp_path / "pinned", ONE_EPOCH, progress=False)
    train_cnn("cls", built / "volumes", built / "splits.csv", tmp_path / "folder", ONE_EPOCH, progress=False)
    pinned, folder = (torch.load(tmp_path / name / "fold0" / "best.pt", weights_only=True) for name in ("pinned", "folder"))
    assert pinned["model"].keys() == folder["model"].keys()
    assert all(torch.equal(pinned["model"][k], folder["model"][k]) for k in pinned["model"])
    volumes = json.loads(revision_file.read_text())["config_revisions"]["volumes"]
    assert pinned["meta"]["dataset"]["config_revision"] == volumes and "fingerprint" in folder["meta"]["dataset"]
    evaluate_cnn("cls", revision_file, built / "splits.csv", tmp_path / "pinned", tmp_path / "eval", ClsEvalParams(bootstrap=10))
    provenance = json.loads((tmp_path / "eval" / "provenance.json").read_text())
    assert provenance["dataset_at_training"] == provenance["dataset_at_evaluation"] == pinned["meta"]["dataset"]


def test_hub_revision_downloads_only_the_volumes_config(built, tmp_path, monkeypatch, hub_env):  # noqa: F811
    with HubServer() as hub:
        revision_file = publish_small_groups(built, tmp_path, monkeypatch,
                                             PublishParams(repo_id="lab/brats-demo", endpoint=hub.endpoint))
        source = VolumeSource(revision_file)
        rows = load_split(source, source.patient_ids[:3], 2, progress=False)
    snapshot = next((tmp_path / "hf-home" / "hub").glob("datasets--lab--brats-demo/snapshots/*"))
    assert source.folder == snapshot and len(rows) == 3  # read from the Hub snapshot, not the local folder
    assert sorted(p.name for p in snapshot.iterdir()) == ["README.md", "volumes"]
    assert source.version["repo_id"] == "lab/brats-demo"
    assert source.version["config_revision"] == json.loads(revision_file.read_text())["config_revisions"]["volumes"]
