"""Datasets written by arrowio: state.json's fingerprint is the data file's SHA-256 (what ``datasets`` users see)."""

import hashlib
import json

from datasets import Features, Value, load_from_disk

from brats_llm.arrowio import DATA_FILE, dataset_writer
from brats_llm.provenance import dataset_version


def test_the_fingerprint_is_the_first_16_hex_of_the_data_files_sha256(tmp_path):
    out = tmp_path / "rows"
    with dataset_writer(out, Features({"n": Value("int32")}), "three rows", kind="test") as rows:
        for n in range(3):
            rows.write({"n": n})
    fingerprint = json.loads((out / "state.json").read_text())["_fingerprint"]
    assert fingerprint == hashlib.sha256((out / DATA_FILE).read_bytes()).hexdigest()[:16]
    assert dataset_version(out)["fingerprint"] == fingerprint and list(load_from_disk(str(out))["n"]) == [0, 1, 2]
