"""The volumes a CNN reads: the ``volumes`` config of a pinned published revision, or a local dataset folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from brats_llm.errors import InputError
from brats_llm.preprocess.volumes import load_volumes, numpy_rows
from brats_llm.provenance import dataset_version, read_revision

#: The published config holding one row per patient (image, mask, regions, grade, spacing).
CONFIG = "volumes"


class VolumeSource:
    """Rows of the volumes dataset by patient id, read lazily.

    ``path`` is either a revision file written by ``publish`` (data/hub_revision.json: the ``volumes``
    config it pins, from the local folder or, with a ``repo_id``, downloaded from the Hub, only that
    config, its files checked against the content hash publish recorded) or a volumes dataset folder
    written by ``prepare`` (data/volumes). Published parquet files are read one row group at a time
    and the last one is kept, so reading patients in storage order decodes each row group once.

    :attr:`version` names the data for provenance: for a revision file the config's content hash
    (the same in every publication that left the volumes unchanged) and the repo, for a folder its
    fingerprint.

    Raises:
        InputError: not a revision file or a prepare folder, the published files differ from what
            publish recorded, or the publication has no ``volumes`` config.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._groups: list[tuple[Any, int]] | None = None  # (parquet file, row group) of a publication
        self._cached: tuple[int, Any] | None = None
        if self.path.is_dir():
            self._open_folder()
        else:
            self._open_revision()

    def _open_folder(self) -> None:
        if not (self.path / "dataset_info.json").is_file():
            raise InputError(f"{self.path}: not a volumes folder written by prepare (no dataset_info.json); give the "
                             "revision file written by publish (data/hub_revision.json) or data/volumes")
        self.folder = self.path
        self._dataset = load_volumes(self.path)
        self.version = dataset_version(self.path)
        self.column_names = list(self._dataset.column_names)
        self.patient_ids = list(self._dataset.with_format(None)["patient_id"])
        self._where = {pid: (0, i) for i, pid in enumerate(self.patient_ids)}

    def _open_revision(self) -> None:
        import pyarrow.parquet as pq

        from brats_llm.publish.pinned import config_data_files, published_folder

        record = read_revision(self.path)
        self.folder = published_folder(self.path, CONFIG)
        self.version = {"revision_file": self.path.as_posix(), "repo_id": record.get("repo_id"), "config": CONFIG,
                        "config_revision": (record.get("config_revisions") or {}).get(CONFIG)}
        files = [pq.ParquetFile(path) for path in config_data_files(self.folder, CONFIG)]
        self._groups = [(parquet, group) for parquet in files for group in range(parquet.num_row_groups)]
        self.patient_ids, self._where = [], {}
        for index, (parquet, group) in enumerate(self._groups):
            ids = parquet.read_row_group(group, columns=["patient_id"]).column("patient_id").to_pylist()
            self._where |= {pid: (index, row) for row, pid in enumerate(ids)}
            self.patient_ids += ids
        self.column_names = list(files[0].schema_arrow.names) if files else []

    def _group(self, index: int):
        if self._groups is None:
            return self._dataset
        if self._cached is None or self._cached[0] != index:
            from datasets import Dataset
            from datasets.table import InMemoryTable

            parquet, group = self._groups[index]
            self._cached = (index, numpy_rows(Dataset(InMemoryTable(parquet.read_row_group(group)))))
        return self._cached[1]

    def check(self, patient_ids: list[str]) -> None:
        """Raise InputError naming the source when some of ``patient_ids`` are not in it."""
        missing = [pid for pid in patient_ids if pid not in self._where]
        if missing:
            raise InputError(f"{self.path} ({self.folder}): patients of the split file not in the dataset: {missing[:5]}")

    def rows(self, patient_ids: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(patient_id, row)`` for ``patient_ids``, in storage order (each row group decoded once)."""
        self.check(patient_ids)
        for pid in sorted(patient_ids, key=self._where.__getitem__):
            group, row = self._where[pid]
            yield pid, self._group(group)[row]

    def column(self, name: str) -> list[Any]:
        """A small column (e.g. ``grade``) of every patient, in :attr:`patient_ids` order."""
        if self._groups is None:
            return list(self._dataset.with_format(None)[name])
        return [value for parquet, group in self._groups
                for value in parquet.read_row_group(group, columns=[name]).column(name).to_pylist()]


def open_volumes(source: VolumeSource | str | os.PathLike) -> VolumeSource:
    """``source`` itself when already open, else a :class:`VolumeSource` on that path."""
    return source if isinstance(source, VolumeSource) else VolumeSource(source)
