"""Ingest: find, validate and load raw BraTS releases (read-only), or synthesise a demo cohort."""
