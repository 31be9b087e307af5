"""The one content hash: its encoding, the large-file shortcut, and publish's revisions from one read of each file."""

import hashlib
import os

import pytest

import brats_llm.provenance as provenance
from brats_llm.provenance import (code_version, content_hash, file_digest, file_digests, files_revision, folder_files,
                                  folder_revision)


@pytest.fixture
def repo(tmp_path):
    """A folder shaped like a published repo: a card and two configs."""
    for name, text in {"README.md": "card", "geometry/train.parquet": "g", "volumes/train.parquet": "v1",
                       "volumes/test.parquet": "v2"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_encoding_is_names_then_file_digests(repo):
    """SHA-256 over each relative name and its file's SHA-256, in sorted order (the recorded revisions' encoding)."""
    expected = hashlib.sha256()
    for name in ("README.md", "geometry/train.parquet", "volumes/test.parquet", "volumes/train.parquet"):
        expected.update(name.encode() + hashlib.sha256((repo / name).read_bytes()).digest())
    assert [p.relative_to(repo).as_posix() for p in folder_files(repo)][:2] == ["README.md", "geometry/train.parquet"]
    assert content_hash(file_digests(repo, folder_files(repo))) == expected.hexdigest()
    assert folder_revision(repo) == expected.hexdigest()[:40]


def test_a_file_digest_is_the_sha256_of_its_bytes(repo):
    assert file_digest(repo / "README.md") == hashlib.sha256(b"card").digest()


def test_names_and_bytes_both_count(repo):
    before = folder_revision(repo)
    (repo / "volumes" / "test.parquet").rename(repo / "volumes" / "val.parquet")
    renamed = folder_revision(repo)
    (repo / "volumes" / "val.parquet").write_text("v3")
    assert len({before, renamed, folder_revision(repo)}) == 3


def test_large_files_are_fingerprinted_by_size_and_mtime(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 100)
    stamp = os.stat(weights).st_mtime_ns
    large = file_digest(weights, large=10)
    assert large == hashlib.sha256(f"100:{stamp}".encode()).digest()
    weights.write_bytes(b"b" * 100)  # same size; mtime put back: not read, so unchanged
    os.utime(weights, ns=(stamp, stamp))
    assert file_digest(weights, large=10) == large
    assert file_digest(weights, large=100) == file_digest(weights) == hashlib.sha256(b"b" * 100).digest()


def test_a_subset_of_digests_hashes_like_its_files(repo):
    digests = file_digests(repo, folder_files(repo))
    volumes = {name: d for name, d in digests.items() if name.startswith("volumes/")}
    assert content_hash(volumes)[:40] == files_revision(repo, folder_files(repo / "volumes"))


def test_publish_reads_each_file_once_and_keeps_both_revisions(repo, monkeypatch):
    from brats_llm.publish.pinned import config_revision, repo_revisions

    expected = folder_revision(repo), {c: config_revision(repo, c) for c in ("geometry", "volumes")}
    read = []
    real = provenance.file_digest
    monkeypatch.setattr(provenance, "file_digest", lambda path, **kw: read.append(path) or real(path, **kw))
    assert repo_revisions(repo, ["geometry", "volumes"]) == expected
    assert sorted(read) == folder_files(repo)  # every file once: the card and each config


def test_code_version_names_the_version_and_a_source_hash():
    version, rest = code_version().split(" ", 1)
    assert version == provenance.__version__ and rest.startswith("(source sha256 ") and len(rest) == len("(source sha256 )") + 12
