"""Write Hugging Face datasets deterministically and atomically, streaming rows to one Arrow file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import DatasetInfo, Features, load_from_disk
from datasets.arrow_writer import ArrowWriter

from brats_llm import atomic
from brats_llm.errors import InputError
from brats_llm.provenance import file_digest

#: The single data file of the ``save_to_disk`` layout we write.
DATA_FILE = "data-00000-of-00001.arrow"


class EmptyDatasetError(InputError):
    """No row was written: an empty dataset is never published."""


#: Rows are buffered and written as one Arrow record batch of about this many bytes: a slice or a
#: conversation row (a few KB) goes out in batches of thousands, a volume (6 MB) in batches of a few.
BATCH_BYTES = 32 * 2**20


def row_bytes(value: Any) -> int:
    """Approximate in-memory size of an encoded row (arrays, bytes and strings; nested lists and dicts)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, dict):
        return sum(row_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(row_bytes(v) for v in value)
    return 8


class RowWriter:
    """Encodes rows with the dataset's ``Features`` (images become PNG bytes) and appends them in batches.

    The batch size is set from the first row's size (:data:`BATCH_BYTES`), so memory stays bounded
    whatever the row, and the bytes on disk depend only on the rows.
    """

    def __init__(self, writer: ArrowWriter, features: Features):
        self._writer, self._features, self.rows = writer, features, 0
        self._batch: int | None = None
        self._encoded: list[dict[str, Any]] = []  # rows given already encoded, not yet written

    def write(self, row: dict[str, Any], *, encoded: bool = False) -> None:
        """Append ``row``.

        ``encoded=True``: the row is already in the Arrow form ``Features.encode_example`` gives
        (images as ``{"bytes", "path"}``, no arrays, only plain Python values); it is neither encoded
        nor walked again, and each batch goes to Arrow in one C++ conversion (the same bytes on disk).
        A writer takes either encoded rows or rows to encode, not both.
        """
        if self._batch is not None and encoded != self._takes_encoded:
            raise ValueError("a RowWriter takes either encoded rows or rows to encode, not both")
        example = row if encoded else self._features.encode_example(row)
        if self._batch is None:
            self._batch = max(1, BATCH_BYTES // max(1, row_bytes(example)))
            self._takes_encoded = encoded
            # ArrowWriter also cuts every table it writes into record batches of its writer_batch_size
            # (1 from dataset_writer): the batch must be the record batch on disk too, not just in memory.
            self._writer.writer_batch_size = self._batch
        if encoded:
            self._encoded.append(example)
            if len(self._encoded) >= self._batch:
                self.flush()
        else:
            self._writer.write(example, writer_batch_size=self._batch)
        self.rows += 1

    _takes_encoded = False

    def flush(self) -> None:
        """Write the buffered encoded rows as one record batch."""
        if self._encoded:
            table = pa.Table.from_pylist(self._encoded, schema=self._features.arrow_schema)
            self._writer.write_table(table, writer_batch_size=self._batch)
            self._encoded = []


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
            rows.flush()
            _, num_bytes = arrow.finalize()
        if rows.rows == 0:
            raise EmptyDatasetError(f"{out_dir}: no rows to write")
        _write_metadata(staging, features, description, num_bytes, rows.rows)


def _write_metadata(folder: Path, features: Features, description: str, num_bytes: int, num_rows: int) -> None:
    fingerprint = file_digest(folder / DATA_FILE).hex()[:16]
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
