"""Exports of the project's patients and folds to other tools' formats (nnU-Net v2)."""
