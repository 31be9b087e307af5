"""Reading a published dataset by its pinned revision: one config, checked (local) or fetched (Hub) once."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict
from datasets.table import InMemoryTable
from huggingface_hub import DatasetCard

from brats_llm.errors import InputError
from brats_llm.provenance import (REVISION_LENGTH, content_hash, file_digests, files_revision, folder_files,
                                  folder_revision, read_revision)

#: The dataset card at the repo root; its ``configs`` list every config's data files.
CARD_FILE = "README.md"


def read_config(folder: Path, config: str) -> DatasetDict:
    """Read one config of a repo folder by the ``configs`` of its card (no ``datasets`` cache involved).

    ``load_dataset`` on a local folder caches by folder layout and can return another folder's rows
    for an identical layout; reading the parquet files directly avoids that.
    """
    return DatasetDict({f["split"]: Dataset(InMemoryTable(pq.read_table(folder / f["path"])))
                        for f in _data_files(folder, config)})


def _data_files(folder: Path, config: str) -> list[dict[str, str]]:
    card = DatasetCard.load(str(folder / CARD_FILE))
    for entry in card.data.configs or []:
        if entry["config_name"] == config:
            return entry["data_files"]
    raise InputError(f"{folder}: no config {config!r} in {CARD_FILE}")


def config_data_files(folder: Path, config: str) -> list[Path]:
    """The parquet files of ``config`` in a repo folder, as its card lists them (every split)."""
    return [folder / f["path"] for f in _data_files(folder, config)]


def config_files(config: str) -> list[str]:
    """Repo paths one config needs: the card (which lists the data files) and the config's folder."""
    return [CARD_FILE, f"{config}/*"]


def config_revision(folder: Path, config: str) -> str:
    """Content hash of one config's files (not the card, which changes with every stage's params).

    A config is checked without hashing the others, and it keeps its hash across publications that
    change only other configs or the card: what was trained on it need not be trained again.
    """
    return files_revision(folder, folder_files(folder / config))


def repo_revisions(folder: Path, configs: list[str]) -> tuple[str, dict[str, str]]:
    """The folder's revision (:func:`~brats_llm.provenance.folder_revision`) and each config's
    (:func:`config_revision`), the same values, from one read of every file: each config is hashed
    from its files' digests, and the folder revision from those digests and the other files' (the card,
    the output marker), not by reading the configs again.
    """
    digests = file_digests(folder, folder_files(folder))
    per_config = {config: content_hash({name: digest for name, digest in digests.items()
                                        if name.startswith(f"{config}/")})[:REVISION_LENGTH]
                  for config in configs}
    return content_hash(digests)[:REVISION_LENGTH], per_config


def published_folder(revision_file: str | os.PathLike, config: str | None = None) -> Path:
    """The repo folder pinned by the revision file, checked or fetched once, for one ``config`` or all.

    Hub: the snapshot at exactly ``revision`` (``snapshot_download``, cached by commit), only the
    card and ``config``'s files when a config is named (not gigabytes of volumes for a conversation
    config); local: the folder. Either way ``config``'s files (or, without a config, the local
    whole folder) are checked against the hash publish recorded. Read configs with :func:`read_config`.

    Raises:
        InputError: the files differ from what publish recorded (changed folder, or another upload).
    """
    record = read_revision(revision_file)
    expected = (record.get("config_revisions") or {}).get(config) if config else None
    if record.get("repo_id"):
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(record["repo_id"], repo_type="dataset", revision=record["revision"],
                                        endpoint=record.get("endpoint"),
                                        allow_patterns=config_files(config) if config else None))
    else:
        folder = Path(record["path"])
    if expected is not None:
        if config_revision(folder, config) != expected:
            raise InputError(f"{folder}: config {config} no longer matches what {revision_file} pins; rerun publish")
    elif not record.get("repo_id") and folder_revision(folder) != record["revision"]:
        raise InputError(f"{folder} no longer matches revision {record['revision']} in {revision_file}; rerun publish")
    return folder


def load_published(revision_file: str | os.PathLike, config: str) -> DatasetDict:
    """Load one config pinned by the revision file (see :func:`published_folder`)."""
    return read_config(published_folder(revision_file, config), config)
