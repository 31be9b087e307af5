"""The release registry: one module per BraTS release, each converting its layout into the standard inventory."""

from __future__ import annotations

from brats_llm.ingest.cases import Release
from brats_llm.ingest.layouts import brats2018, brats2020, brats2021, brats2023, msd

#: Every supported release, in detection order: the first whose ``detect`` accepts the release folder reads it.
#: Adding a release: one new module here with its ``RELEASE`` (see docs/data.md), listed below, and its test.
RELEASES: tuple[Release, ...] = (msd.RELEASE, brats2018.RELEASE, brats2020.RELEASE, brats2023.RELEASE,
                                 brats2021.RELEASE)
#: Read flat case folders that no release claims (BraTS 2020 without its name_mapping.csv: cases lack grades).
FALLBACK: Release = brats2020.RELEASE
#: Release names (``Inventory.layout`` values).
LAYOUTS: tuple[str, ...] = tuple(release.name for release in RELEASES)
#: Releases whose cases carry a grade (LGG/HGG); the others give ``grade == NO_GRADE``.
GRADED_LAYOUTS: tuple[str, ...] = tuple(release.name for release in RELEASES if release.graded)
