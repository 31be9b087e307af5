"""Write Hugging Face datasets deterministically and atomically, streaming rows to one Arrow file."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datasets import DatasetInfo, Features, load_from_disk
from datasets.arrow_writer import ArrowWriter

from brats_llm import atomic
from brats_llm.errors import InputError

#: The single data file of the ``save_to_disk`` layout we write.
DATA_FILE = "data-00000-of-00001.arrow"


class EmptyDatasetError(InputError):
    """No row was written: an empty dataset is never published."""


class RowWriter:
    """Encodes rows with the dataset's ``Features`` (images become PNG bytes) and appends them."""

    def __init__(self, writer: ArrowWriter, features: Features):
        self._writer, self._features, self.rows = writer, features, 0

    def write(self, row: dict[str, Any]) -> None:
        self._writer.write(self._features.encode_example(row))
        self.rows += 1


@contextmanager
def dataset_writer(out_dir: str | os.PathLike, features: Features, description: str, *, kind: str) -> Iterator[RowWriter]:
    """Stream rows into ``out_dir`` in the ``save_to_disk`` layout; it appears only if the block succeeds.

    ``Dataset.save_to_disk`` would re-read and copy every byte (memory-mapped, so RSS grows with
    the data); the layout is three files, so it is written directly: the data file,
    ``dataset_info.json`` (via ``DatasetInfo``) and ``state.json``, whose fingerprint is the data
    file's SHA-256 (same rows, same bytes). The result is checked with ``load_from_disk``. ``kind``
    names the output for :func:`brats_llm.atomic.atomic_dir` (its marker file ``load_from_disk`` ignores).

    Raises:
        EmptyDatasetError: no row was written (an empty dataset is never published).
    """
    with atomic.atomic_dir(out_dir, kind=kind) as staging:
        with ArrowWriter(features=features, path=str(staging / DATA_FILE), writer_batch_size=1) as arrow:
            rows = RowWriter(arrow, features)
            yield rows
            _, num_bytes = arrow.finalize()
        if rows.rows == 0:
            raise EmptyDatasetError(f"{out_dir}: no rows to write")
        _write_metadata(staging, features, description, num_bytes, rows.rows)


def _write_metadata(folder: Path, features: Features, description: str, num_bytes: int, num_rows: int) -> None:
    with (folder / DATA_FILE).open("rb") as handle:
        fingerprint = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    DatasetInfo(description=description, features=features, dataset_size=num_bytes).write_to_directory(str(folder))
    atomic.write_json(folder / "state.json", {
        "_data_files": [{"filename": DATA_FILE}],
        "_fingerprint": fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    })
    loaded = len(load_from_disk(str(folder)))
    if loaded != num_rows:
        raise RuntimeError(f"{folder}: wrote {num_rows} rows but load_from_disk sees {loaded}")
